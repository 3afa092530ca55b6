"""The stand-in upstream's classes: the scripted brain and the emulator server that stamps and times frames.

Imported by `load_upstream.build_standin` once Django is set up (the reception brain and the bridge need it).
"""

from __future__ import annotations

import base64
import json
from array import array
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from realtime.bridge import text_to_say
from realtime.client import APPEND_PREFIX
from realtime.emulator import Brain, BrainContext, CallFunction, EmulatorServer, Say
from realtime.emulator.audio import speech_for_text
from realtime.emulator.server import EmulatorSession, _json_response
from tests.support.load_upstream import (
    CALLS,
    SCRIPT,
    STAMP_BYTES,
    STATS_PATH,
    now_us,
    percentiles,
    stamp,
    stamp_age_ms,
    utterance_of,
)

ASK_AGAIN = "もう一度お願いできますか。"


class ScriptBrain(Brain):
    """Transcripts and calls from SCRIPT, replies as slices of one pre-rendered clip (60 ms a character)."""

    clip = speech_for_text("あ" * 150)

    async def transcribe(self, pcm16: bytes, language: str | None) -> str:
        number = utterance_of(pcm16)
        return SCRIPT[number - 1][0] if 0 < number <= len(SCRIPT) else ""

    async def respond(self, context: BrainContext):
        spoken = text_to_say(context.instructions)
        if spoken:
            return Say(spoken)
        if context.function_outputs:
            try:
                output = json.loads(context.function_outputs[-1].get("output", ""))
            except ValueError:
                output = {}
            return Say(str(output.get("reply") or ASK_AGAIN))
        latest = context.user_texts[-1] if context.user_texts else ""
        call = CALLS.get(latest.strip())
        return CallFunction(*call) if call else Say(ASK_AGAIN)

    async def synthesize(self, text: str, language: str | None) -> bytes:
        return self.clip[: max(200, 60 * len(text)) * 48]

    def speech_detector(self) -> Callable[[bytes], bool]:
        """Speech is any frame but the kiosks' digital silence: the emulator's energy VAD (numpy's RMS over every
        frame of every session) was a tenth of the stand-in's CPU."""
        return is_speech


def is_speech(frame: bytes) -> bool:
    """Whether a 20 ms VAD window holds more non-zero bytes than a kiosk frame's stamp and utterance number (14
    bytes), the only non-zero bytes of the kiosks' silence: a window straddling two frames holds the end of one's
    header and the start of the next's, 14 bytes in all."""
    return len(frame) - frame.count(0) > STAMP_BYTES + 2


class DiscardLog(list):
    """The emulator's event log: nothing kept over a long run."""

    def append(self, item: Any) -> None:
        pass


class StampingSession(EmulatorSession):
    """Stamps the send time into each reply's first audio samples and times each append's age on arrival.

    An append whose frame the kiosk sent before this session's socket opened waited for the session to open (the
    server's set-up and its connection here), not for the relay: its age is kept apart, in `opening_ms`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened_ms = now_us() / 1000
        self.received = self.sent = DiscardLog()
        send = self.connection.send

        async def stamped_send(frame: Any, *rest: Any) -> None:
            if isinstance(frame, str) and frame.startswith('{"type": "response.output_audio.delta"'):
                at = frame.find('"delta": "') + 10
                fresh = base64.b64encode(stamp(bytes(STAMP_BYTES))[:STAMP_BYTES]).decode()
                if frame[at + len(fresh)] not in '"=':  # a delta of at least 12 bytes
                    frame = frame[:at] + fresh + frame[at + len(fresh) :]
            await send(frame, *rest)

        self.connection.send = stamped_send

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith(APPEND_PREFIX):
            start = len(APPEND_PREFIX)
            age = stamp_age_ms(base64.b64decode(message[start : start + 16]))
            before_open = now_us() / 1000 - age < self.opened_ms
            (self.server.opening_ms if before_open else self.server.upstream_ms).append(age)
        await super()._on_message(message)


class StandIn(EmulatorServer):
    """The emulator with a `/stats` page of the appends' ages (`?reset` starts counting afresh)."""

    upstream_ms = array("d")
    opening_ms = array("d")

    async def _process_request(self, connection, request):
        if request.path.startswith(STATS_PATH):
            stats = {"upstream_ms": percentiles(self.upstream_ms), "opening_ms": percentiles(self.opening_ms)}
            if request.path.endswith("?reset"):
                del self.upstream_ms[:], self.opening_ms[:]
            return _json_response(HTTPStatus.OK, stats)
        return await super()._process_request(connection, request)

    async def _handle(self, connection) -> None:
        model = connection.request.path.split("model=", 1)[1].split("&", 1)[0]
        await StampingSession(self, connection, model).run(beta=False)  # not kept: nothing grows
