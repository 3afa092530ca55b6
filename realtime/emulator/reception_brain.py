"""The emulator's ReceptionBrain wired to the local speech engines and the workflow's language understanding.

`manage.py realtime_emulator --brain reception` (setting REALTIME_EMULATOR_BRAIN) uses it, so the Realtime path
holds a whole reception conversation offline: Whisper hears the visitor, the rule-based understanding picks the
tool call a model would make, and the local text-to-speech says the workflow's reply.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings

from reception.workflow import Understanding, get_understanding
from reception.workflow.names import recognition_hint
from reception.workflow.prompts import field_list, say
from reception.workflow.state import VISIT_FIELDS
from reception.workflow.understanding import EXPECT_CONFIRMATION
from speech.audio import KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE, resample_pcm16
from speech.engines import legacy_engines
from speech.vad import SpeechFrames

from ..bridge import text_to_say
from .brain import BrainContext, ReceptionBrain, Reply, Say

# What the session's last tool output said the workflow awaits, and the session's language, for the
# understanding (set per response task; asyncio.to_thread carries them into the worker thread).
_expecting: contextvars.ContextVar[str] = contextvars.ContextVar("expecting", default="")
_language: contextvars.ContextVar[str] = contextvars.ContextVar("language", default="ja")


def tool_call(understood: Understanding) -> tuple[str, dict[str, Any]] | None:
    """The reception tool call a model would make for an utterance, or None when it says nothing usable."""
    if understood.visitor_type == "delivery":
        if _expecting.get() == EXPECT_CONFIRMATION and understood.answer is not False:
            return None  # a lone 「お届け物」 at the read-back: asked again, as the workflow itself would
        arguments: dict[str, Any] = {"needs_signature": understood.needs_signature}
        if understood.company_name:
            arguments["company_name"] = understood.company_name
        return "report_delivery", arguments
    if understood.found():
        return "collect_visitor_info", understood.found()
    if understood.answer is not None:
        return "confirm_visitor_info", {"confirmed": understood.answer}
    if understood.host_department:
        return "choose_host", {"department": understood.host_department}
    return None


class WorkflowReceptionBrain(ReceptionBrain):
    """ReceptionBrain that also obeys "say exactly" responses (greetings) and answers rejected calls politely.

    `new_speech_frames` makes each session's server VAD (the local Silero model); None leaves the energy VAD."""

    new_speech_frames: Callable[[], Callable[[bytes], bool]] | None = None

    def speech_detector(self) -> Callable[[bytes], bool] | None:
        return self.new_speech_frames() if self.new_speech_frames is not None else None

    async def respond(self, context: BrainContext) -> Reply:
        spoken = text_to_say(context.instructions)
        if spoken:
            return Say(spoken)
        awaited = _awaited(context)
        _expecting.set(str(awaited.get("awaiting", "")))
        _language.set(context.language or self.language)
        return await super().respond(context)

    def not_understood(self, context: BrainContext) -> Reply:
        """The workflow's own request to repeat the pending question, as the Legacy path asks it."""
        language = context.language or self.language
        awaited = _awaited(context)
        if awaited.get("awaiting") == EXPECT_CONFIRMATION:
            return Say(say("confirm_unclear", language))
        missing = awaited.get("missing") or list(VISIT_FIELDS)
        return Say(say("ask_unclear", language, fields=field_list(missing, language)))

    def after_output(self, item: dict[str, Any], language: str) -> Reply:
        output = _tool_output(item)
        if isinstance(output.get("reply"), str):
            return Say(output["reply"])
        missing = output.get("missing") or list(VISIT_FIELDS)
        return Say(say("ask_unclear", language, fields=field_list(missing, language)))


def build_reception_brain(
    language: str = "ja",
    *,
    transcribe: Callable[[bytes, str | None], str] | None = None,
    synthesize: Callable[[str, str | None], bytes] | None = None,
) -> WorkflowReceptionBrain:
    """The brain for `realtime_emulator --brain reception`; models load on first use.

    `transcribe` / `synthesize` replace the local speech engines (tests that need no speech models).
    """

    def local_transcribe(pcm16: bytes, language: str | None) -> str:
        """Whisper's words, only when it is confident they are speech (the Legacy path's gate): noise says nothing."""
        language = language or "ja"
        audio = resample_pcm16(pcm16, KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE)
        heard = legacy_engines().stt.transcribe(audio, language, recognition_hint(language))
        confident = heard.confident(settings.LEGACY_NO_SPEECH_THRESHOLD, settings.LEGACY_LOGPROB_THRESHOLD)
        return heard.text.strip() if confident else ""

    def understand(text: str) -> tuple[str, dict[str, Any]] | None:
        return tool_call(get_understanding().understand(text, _language.get(), _expecting.get()))

    def local_synthesize(text: str, language: str | None) -> bytes:
        return legacy_engines().tts.synthesize(text, language or "ja")

    brain = WorkflowReceptionBrain(
        transcribe or local_transcribe, understand, synthesize or local_synthesize, language=language
    )
    if transcribe is None:  # it hears real speech: the server VAD is a model too
        brain.new_speech_frames = lambda: SpeechFrames(legacy_engines().vad_factory())
    return brain


def _awaited(context: BrainContext) -> dict[str, Any]:
    """The last tool output of the conversation: what the workflow awaits and what it still misses."""
    return next((_tool_output(item) for item in reversed(context.items) if _is_output(item)), {})


def _is_output(item: dict[str, Any]) -> bool:
    return item.get("type") == "function_call_output"


def _tool_output(item: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(item.get("output", ""))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
