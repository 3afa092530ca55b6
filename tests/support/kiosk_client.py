"""Driving the kiosk socket in tests: connect with a key, send, and collect a turn's messages and audio."""

from __future__ import annotations

import json
from collections.abc import Callable

from channels.testing import WebsocketCommunicator

from reception_project.asgi import application


async def connect(key: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/kiosk/", headers=[(b"authorization", f"Bearer {key}".encode())])
    connected, _ = await ws.connect()
    assert connected
    return ws


async def collect_until(
    ws: WebsocketCommunicator, done: Callable[[dict, list[dict]], bool], wait: float = 30
) -> tuple[list[dict], bytes]:
    """JSON messages and audio until `done(message, messages_so_far)` is true for a message."""
    messages, audio = [], bytearray()
    while True:
        output = await ws.receive_output(timeout=wait)
        if output.get("bytes") is not None:
            audio += output["bytes"]
            continue
        if output.get("type") == "websocket.close":
            raise AssertionError(f"the kiosk socket was closed: {output} after {messages}")
        message = json.loads(output["text"])
        messages.append(message)
        if done(message, messages):
            return messages, bytes(audio)


async def collect_turn(ws: WebsocketCommunicator, wait: float = 30) -> tuple[list[dict], bytes]:
    """Everything up to and including the next response.done (or error)."""
    return await collect_until(ws, lambda message, _: message["type"] in ("response.done", "error"), wait)


def last(messages: list[dict], kind: str, role: str | None = None) -> dict:
    return [m for m in messages if m["type"] == kind and (role is None or m.get("role") == role)][-1]
