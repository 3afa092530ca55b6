"""The masking keys of the upstream socket's frames, drawn from the OS's random source 1,024 at a time.

A WebSocket client masks every frame it sends with a fresh 4-byte key from a strong source of entropy (RFC 6455,
section 5.3). `websockets` draws each with `secrets.token_bytes(4)`, that is `os.urandom`, which releases the GIL
around its getrandom call: with 50 audio frames a second per kiosk, the event loop offered the GIL to every other
thread (the database's, the speech engines') at each frame and could wait up to the switch interval (5 ms) to get
it back. Drawn from the same source in blocks of 4 KiB, the keys are as unpredictable, and the loop lets the GIL go
once per 1,024 frames. Measured with `benchmarks/relay_capacity.py` (see docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading

import websockets.frames

logger = logging.getLogger(__name__)

KEY_BYTES = 4
BLOCK_BYTES = 4096


class MaskKeys:
    """`secrets` for `websockets.frames`: 4-byte draws come from a block of `os.urandom`, any other straight from
    `secrets`. Safe across threads; a forked child draws a block of its own (never its parent's next keys)."""

    def __init__(self) -> None:
        self._start_empty()
        os.register_at_fork(after_in_child=self._start_empty)

    def _start_empty(self) -> None:
        """No block yet, and a fresh lock (in a forked child another thread of the parent may have held it)."""
        self._lock = threading.Lock()
        self._block, self._taken = b"", 0

    def token_bytes(self, nbytes: int) -> bytes:
        if nbytes != KEY_BYTES:
            return secrets.token_bytes(nbytes)
        with self._lock:
            if self._taken + KEY_BYTES > len(self._block):
                self._block, self._taken = os.urandom(BLOCK_BYTES), 0
            self._taken += KEY_BYTES
            return self._block[self._taken - KEY_BYTES : self._taken]

    def __getattr__(self, name: str):
        return getattr(secrets, name)


def install() -> None:
    """Let `websockets` draw its frames' masking keys from a `MaskKeys` (once per process; from `RealtimeConfig`)."""
    if isinstance(websockets.frames.secrets, MaskKeys):
        return
    if getattr(websockets.frames, "secrets", None) is not secrets:
        logger.warning("websockets no longer draws its masking keys from `secrets`: each frame's key is left to it")
        return
    websockets.frames.secrets = MaskKeys()
