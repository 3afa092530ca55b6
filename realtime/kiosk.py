"""What a voice path (Realtime here, Legacy in `voice`) exchanges with the kiosk socket.

Both paths write to a `KioskOutput` and raise `ProtocolError` for a frame they cannot act on; the kiosk
consumer implements the one and sends the other back as an `error` message.
"""

from __future__ import annotations

from typing import Protocol


class KioskOutput(Protocol):
    """Where a voice path sends what the kiosk should show and play."""

    async def send_message(self, message: dict) -> None: ...

    async def send_audio(self, pcm16: bytes) -> None: ...


class ProtocolError(Exception):
    """A frame the server cannot act on; sent back as an `error` message with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_message(self) -> dict[str, str]:
        return {"type": "error", "code": self.code, "message": self.message}
