"""Waiting on a condition instead of sleeping: poll a predicate until it holds, or fail at a deadline.

`wait_until` is for plain code, `until` for async code (its predicate may be a coroutine function). Both return
the predicate's first true value and fail with an AssertionError that names what was awaited. `stays` checks
the opposite: that nothing changes during a quiet period.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 5.0
INTERVAL = 0.01


def _describe(predicate: Callable[[], Any], what: str | Callable[[], str] | None) -> str:
    if callable(what):
        return what()
    return what or getattr(predicate, "__qualname__", repr(predicate))


def wait_until(
    predicate: Callable[[], Any],
    *,
    within: float = TIMEOUT,
    interval: float = INTERVAL,
    what: str | Callable[[], str] | None = None,
) -> Any:
    """Call `predicate` every `interval` seconds until it returns a true value; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {within} s in vain for: {_describe(predicate, what)}")
        time.sleep(interval)


async def until(
    predicate: Callable[[], Any],
    *,
    within: float = TIMEOUT,
    interval: float = INTERVAL,
    what: str | Callable[[], str] | None = None,
) -> Any:
    """The async `wait_until`: the event loop runs meanwhile, so the awaited work can progress."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {within} s in vain for: {_describe(predicate, what)}")
        await asyncio.sleep(interval)


async def stays(
    predicate: Callable[[], Any],
    *,
    seconds: float,
    interval: float = INTERVAL,
    what: str | Callable[[], str] | None = None,
) -> None:
    """Check that `predicate` keeps holding for `seconds` (nothing more arrives in a quiet period); fail as soon
    as it does not. For the absence of an event, which no predicate can wait for."""
    deadline = time.monotonic() + seconds
    while True:
        if not predicate():
            raise AssertionError(f"no longer true within {seconds} s: {_describe(predicate, what)}")
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(interval)
