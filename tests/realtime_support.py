"""Helpers for Realtime protocol tests: the test key and a bare websockets client for the emulator."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import websockets

from realtime.emulator import EmulatorServer

TEST_KEY = "sk-test-emulator-key"
TIMEOUT = 5.0


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
