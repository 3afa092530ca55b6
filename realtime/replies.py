"""What the kiosk has been sent of the assistant's replies on the Realtime path, and what it has played.

The kiosk plays audio at 1x as it arrives, queued after what it is still playing. A barge-in cuts the reply being
played: nothing more of its item reaches the kiosk, and the kiosk is told at once that the reply ended, so the
service's own `response.done` for it is not passed on a second time.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from .kiosk import KioskOutput

BYTES_PER_MS = 48  # PCM16 mono 24 kHz


@dataclass
class Playback:
    """Audio of one assistant item sent to the kiosk, which plays it at 1x from `started`."""

    item_id: str
    started: float
    session: int  # which upstream session produced it (items do not survive a renewal)
    sent_bytes: int = 0

    @property
    def sent_ms(self) -> int:
        return self.sent_bytes // BYTES_PER_MS

    def played_ms(self, now: float) -> int:
        return min(self.sent_ms, int((now - self.started) * 1000))

    def ends_at(self) -> float:
        return self.started + self.sent_ms / 1000


class KioskReplies:
    """The replies of one session as the kiosk sees them: audio in playback, transcripts, `response.done`."""

    def __init__(self, output: KioskOutput) -> None:
        self.output = output
        self.playback: Playback | None = None
        self.response_id: str | None = None  # the response in progress upstream
        self._interrupted_items: set[str] = set()
        self._speaking: set[str] = set()  # responses that produced audio or transcript
        self._flushed: set[str] = set()  # responses the kiosk already got `response.done` for
        self._partial: dict[str, str] = {}

    async def audio(self, event: dict[str, Any], now: float, *, speak: bool, session: int) -> None:
        """A `response.output_audio.delta`: played to a visitor who talks, unless its item was cut off."""
        pcm = base64.b64decode(event["delta"])
        self._speaking.add(event["response_id"])
        item_id = event["item_id"]
        if speak and item_id not in self._interrupted_items:
            if self.playback is None or self.playback.item_id != item_id:
                # The kiosk queues audio: a new item starts playing when the previous one has been played out.
                start = max(now, self.playback.ends_at()) if self.playback else now
                self.playback = Playback(item_id, start, session)
            self.playback.sent_bytes += len(pcm)
            await self.output.send_audio(pcm)

    def partial_transcript(self, event: dict[str, Any]) -> str | None:
        """The transcript so far after a delta, or None when its item was cut off."""
        self._speaking.add(event["response_id"])
        item_id = event["item_id"]
        if item_id in self._interrupted_items:
            return None
        self._partial[item_id] = self._partial.get(item_id, "") + event["delta"]
        return self._partial[item_id]

    def final_transcript(self, event: dict[str, Any]) -> str | None:
        """The whole transcript of an item, or None when it was cut off or is empty."""
        self._speaking.add(event["response_id"])
        self._partial.pop(event["item_id"], None)
        if event["item_id"] in self._interrupted_items or not event["transcript"]:
            return None
        return event["transcript"]

    def playing(self, now: float) -> Playback | None:
        """The playback the kiosk is still playing at `now`, if any."""
        playback = self.playback
        return playback if playback is not None and playback.played_ms(now) < playback.sent_ms else None

    def cut(self, playing: Playback | None) -> bool:
        """Barge-in: stop the reply `playing` (from `playing()`); False when nothing of a reply reached the kiosk."""
        if playing is None:
            return self.response_id in self._speaking
        self._interrupted_items.add(playing.item_id)
        self.playback = None
        return True

    def flush(self) -> None:
        """The kiosk is told now that the response in progress ended."""
        if self.response_id is not None:
            self._flushed.add(self.response_id)

    def done(self, response: dict[str, Any]) -> str | None:
        """The `response.done` status to send the kiosk for `response`; None when it showed nothing or was flushed."""
        response_id = response["id"]
        if response_id not in self._speaking:
            return None
        self._speaking.discard(response_id)
        if response_id in self._flushed:
            self._flushed.discard(response_id)
            return None
        status = response.get("status")
        return status if status in ("completed", "cancelled") else "failed"


def append_capped(buffer: bytearray, pcm16: bytes, limit: int) -> None:
    """Append `pcm16` to `buffer`, keeping only its last `limit` bytes."""
    buffer += pcm16
    if len(buffer) > limit:
        del buffer[: len(buffer) - limit]
