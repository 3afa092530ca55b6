"""Helpers for Realtime protocol tests: the test key, a bare websockets client for the emulator, a task-leak check,
and the shared state several workers run Realtime over."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from realtime.emulator import EmulatorServer
from realtime.emulator.audio import tone
from realtime.emulator.reception_brain import build_reception_brain
from tests.support.live_server import LiveServer, throwaway_database
from tests.support.waiting import until

TEST_KEY = "sk-test-emulator-key"
TIMEOUT = 5.0


async def assert_no_leaked_tasks() -> None:
    """Fail if any asyncio task besides the caller is still running shortly (a second) after a test."""
    current = asyncio.current_task()

    def others() -> list[asyncio.Task[Any]]:
        return [task for task in asyncio.all_tasks() if task is not current and not task.done()]

    await until(lambda: not others(), within=1.0, what=lambda: f"no asyncio task left running, still: {others()}")


def reception_emulator() -> EmulatorServer:
    """The emulator with the reception brain, no speech models: it hears nothing and speaks tones."""
    voice = lambda text, language: tone(max(200, 60 * len(text)))  # noqa: E731
    return EmulatorServer(build_reception_brain(transcribe=lambda pcm, language: "", synthesize=voice))


class RawSession:
    """A bare `websockets` client for protocol-level assertions (no SDK, no RealtimeClient)."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection

    async def send(self, event: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(event))

    async def append(self, pcm16: bytes) -> None:
        await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16).decode()})

    async def recv(self, within: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(within):
            return json.loads(await self.connection.recv())

    async def until(self, event_type: str, within: float = TIMEOUT) -> list[dict[str, Any]]:
        """Every event up to and including the first of `event_type`."""
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while not events or events[-1]["type"] != event_type:
                events.append(json.loads(await self.connection.recv()))
        return events

    async def close(self) -> None:
        await self.connection.close()


async def open_raw(server: EmulatorServer, *, key: str = TEST_KEY, model: str = "gpt-realtime") -> RawSession:
    """Connect with a bearer key and consume `session.created`."""
    connection = await websockets.connect(
        f"{server.url}?model={model}", additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=TIMEOUT
    )
    session = RawSession(connection)
    created = await session.recv()
    assert created["type"] == "session.created"
    return session


class LoudVAD:
    """A VAD that hears speech in any audible frame (tests speak with tones; no model needed)."""

    sample_rate = 16000
    frame_samples = 512

    def speech_probability(self, frame: np.ndarray) -> float:
        return 1.0 if float(np.abs(frame).max()) > 0.01 else 0.0

    def reset(self) -> None:
        pass


class FakeKiosk:
    """A KioskOutput that records what a voice path sends: messages, audio chunks and when each chunk was sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.audio_times: list[float] = []
        self._changed = asyncio.Condition()

    async def send_message(self, message: dict) -> None:
        async with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    async def send_audio(self, pcm16: bytes) -> None:
        async with self._changed:
            self.audio += pcm16
            self.audio_times.append(asyncio.get_running_loop().time())
            self._changed.notify_all()

    def of_type(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind and all(m.get(k) == v for k, v in fields.items())]

    async def wait_for(self, kind: str, count: int = 1, within: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The `count`-th message of `kind` (with `fields`), waiting for it."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.of_type(kind, **fields)) >= count)
        return self.of_type(kind, **fields)[count - 1]

    async def wait_for_audio(self, size: int = 1, within: float = TIMEOUT) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.audio) >= size)


@asynccontextmanager
async def realtime_everywhere(directory: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """What several workers share, made ready: a fresh PostgreSQL database with the demo data, Redis, the bundled
    emulator as the upstream, Realtime on for every session. Yields a LiveServer for commands (`.key`: a kiosk)."""
    upstream = reception_emulator()
    await upstream.start()
    try:
        with throwaway_database("postgres", directory) as database_url:
            env = {"REDIS_URL": redis_url, "REALTIME_API_URL": upstream.url}
            env["TASK_QUEUE_IMMEDIATE"] = "false"  # the fleet's own consumer runs the tasks, as deployed
            setup = LiveServer(database_url, directory, env)
            setup.key = setup.prepare()
            setup.manage("rollout", "--enable", "--percent", "100", "--reason", "drill")
            yield setup
    finally:
        await upstream.stop()
