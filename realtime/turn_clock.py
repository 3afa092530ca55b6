"""How long the visitor of a Realtime session waited for each answer, and whose time that was.

A turn's wait runs from the end of the visitor's turn (`speech_stopped`, or when we send the commit or the typed
text) to the moment the first audio of the answer has been sent to the kiosk. The upstream's part ends when the
frame of that first audio event was read from the socket; our function calls' run time in between is ours.
"""

from __future__ import annotations

import time

from core.timing import TurnTiming


class TurnClock:
    """The pending turn of one session (monotonic clock), and the TurnTiming of each response that answered one."""

    def __init__(self) -> None:
        self.turn_end_at: float | None = None  # the visitor finished a turn that has no audio answer yet
        self.tools_running = 0
        self.last_latency: float | None = None  # seconds from the end of the last turn to its first audio
        self._tools_since = 0.0  # when the running function calls started (while tools_running > 0)
        self._tool_seconds = 0.0  # our function calls' time since the pending turn ended
        self._timings: dict[str, TurnTiming] = {}  # response id -> the timing of the turn it answered

    def end_turn(self, at: float) -> None:
        """The visitor's turn ended at `at`; its wait for the first audio starts."""
        self.turn_end_at = at
        self._tool_seconds = 0.0

    def tool_started(self, at: float) -> None:
        if not self.tools_running:
            self._tools_since = at
        self.tools_running += 1

    def tool_finished(self, at: float) -> None:
        self.tools_running -= 1
        if not self.tools_running and self.turn_end_at is not None:
            self._tool_seconds += at - max(self._tools_since, self.turn_end_at)

    def take_turn_end(self) -> float | None:
        """The end of the pending turn (None: none is pending); the turn is no longer pending."""
        turn_end, self.turn_end_at = self.turn_end_at, None
        return turn_end

    def answered(self, turn_end: float, response_id: str, arrived: float) -> None:
        """The first audio of `response_id`, read at `arrived`, has reached the kiosk: the turn's wait is over."""
        self.last_latency = time.monotonic() - turn_end
        upstream = arrived - turn_end - self._tool_seconds
        self._timings[response_id] = TurnTiming.split(self.last_latency * 1000, upstream * 1000)

    def timing(self, response_id: str) -> TurnTiming | None:
        """The timing of the turn `response_id` answered with audio (once), or None."""
        return self._timings.pop(response_id, None)
