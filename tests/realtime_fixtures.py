"""Pytest plugin for Realtime tests: a running emulator per test and a task-leak check.

Load it from a test module with `pytest_plugins = ["tests.realtime_fixtures"]`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from realtime.emulator import EmulatorConfig, EmulatorServer, ScriptedBrain
from tests.realtime_support import TEST_KEY


async def assert_no_leaked_tasks() -> None:
    """Fail if any asyncio task besides the caller is still running shortly after a test."""
    current = asyncio.current_task()
    others: list[asyncio.Task[Any]] = []
    for _ in range(100):
        others = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        if not others:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"leaked asyncio tasks: {others}")


@pytest.fixture
async def realtime_emulator() -> AsyncIterator[EmulatorServer]:
    """A started emulator on a free 127.0.0.1 port that accepts TEST_KEY, with a ScriptedBrain.

    Tests replace `server.brain`, `server.config` fields or call `server.set_faults(...)` as they need.
    On teardown the server stops and no asyncio task may be left running.
    """
    server = EmulatorServer(ScriptedBrain(), config=EmulatorConfig(accepted_keys=frozenset({TEST_KEY})))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await assert_no_leaked_tasks()
