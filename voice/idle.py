"""The idle watchdog of one kiosk session: a visitor who walks away is forgotten.

`on_idle` is called once the session has had no visitor activity for `timeout` seconds since the
assistant's last reply ended (KIOSK_IDLE_TIMEOUT_SECONDS). The consumer then ends the session.

Visitor activity is what a voice path recognised as the visitor: typed text, a push-to-talk commit,
or a visitor transcript (the Legacy path's VAD and speech-to-text, or the Realtime upstream's VAD and
transcription). Raw microphone level is deliberately not counted: browsers' automatic gain lifts lobby
noise to speech level, and a session kept open by noise is exactly the one that would show a visitor's
name to the next person.

A reply holds the clock: from the visitor's turn (text or commit) or the first assistant frame until
`response.done` (or an `error`, after which no reply comes), and then for as long as the audio sent
takes to play. A turn that never finishes holds it for at most TURN_CEILING_SECONDS.

The watchdog arms at the first visitor activity, or at once for a resumed session: a fresh session
nobody has spoken to holds nothing to forget, and ending it would only make an empty lobby hear the
greeting again every minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress

from django.conf import settings

from speech.audio import KIOSK_SAMPLE_RATE

TURN_CEILING_SECONDS = 120.0
PLAYBACK_BYTES_PER_SECOND = KIOSK_SAMPLE_RATE * 2  # PCM16 mono


class IdleWatchdog:
    """Watches one session's frames in both directions; its task lives from `start()` to `stop()`."""

    clock = staticmethod(time.monotonic)

    def __init__(self, timeout: float, on_idle: Callable[[], Awaitable[None]], *, armed: bool = False) -> None:
        self.timeout = timeout
        self._on_idle = on_idle
        self._armed = armed
        self._quiet_since = self.clock()
        self._busy_since: float | None = None
        self._speaking_until = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Cancel the watchdog's task and wait for it; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def visitor_active(self, *, turn: bool = False) -> None:
        """The visitor typed or spoke; `turn`: a reply is now owed (text or commit)."""
        now = self.clock()
        self._armed = True
        self._quiet_since = now
        if turn and self._busy_since is None:
            self._busy_since = now
        self._wake.set()

    def saw_message(self, message: dict) -> None:
        """A JSON frame sent to the kiosk."""
        kind = message.get("type")
        if kind == "transcript" and message.get("role") == "visitor":
            self.visitor_active()
        elif kind == "transcript":
            self._reply_output()
        elif kind == "response.done":
            self._busy_since = None
            self._quiet_since = self.clock()
            self._wake.set()
        elif kind == "error":  # e.g. a commit with no speech: no reply is coming
            self._busy_since = None
            self._wake.set()

    def saw_audio(self, byte_count: int) -> None:
        """Assistant audio sent to the kiosk: it plays in real time after what was sent before."""
        now = self.clock()
        self._speaking_until = max(self._speaking_until, now) + byte_count / PLAYBACK_BYTES_PER_SECOND
        self._reply_output()

    def is_idle(self) -> bool:
        left = self._seconds_left()
        return left is not None and left <= 0

    def _reply_output(self) -> None:
        if self._busy_since is None:
            self._busy_since = self.clock()
            self._wake.set()

    def _seconds_left(self) -> float | None:
        """Seconds until the session is idle (<= 0: it is); None while nothing can make it idle."""
        if not self._armed:
            return None
        now = self.clock()
        if self._busy_since is not None and now < self._busy_since + TURN_CEILING_SECONDS:
            return self._busy_since + TURN_CEILING_SECONDS - now
        return max(self._quiet_since, self._speaking_until) + self.timeout - now

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            left = self._seconds_left()
            if left is not None and left <= 0:
                await self._on_idle()
                left = None  # once; new activity starts the clock again
            # Not `wait_for`: on Python 3.11 it swallows a cancel that comes as the event is set, and `stop()`
            # would wait for ever on a watchdog that went on watching.
            with suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._wake.wait()


def abandoned_after_seconds() -> float:
    """Inactivity after which an unfinished visit is abandoned: never a live session's (idle timeout plus the
    longest a reply may hold one)."""
    return settings.KIOSK_IDLE_TIMEOUT_SECONDS + TURN_CEILING_SECONDS
