"""What the emulator says: a pluggable Brain, a ScriptedBrain for tests and a ReceptionBrain for local demos."""

from __future__ import annotations

import abc
import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .audio import speech_for_text


@dataclass(frozen=True)
class Say:
    """Speak `text` (audio plus transcript)."""

    text: str


@dataclass(frozen=True)
class CallFunction:
    """Call one of the declared tools with `arguments`, then wait for its output and a `response.create`."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


Reply = Say | CallFunction


@dataclass(frozen=True)
class BrainContext:
    """The conversation so far, as the emulator's session sees it when a response starts."""

    items: Sequence[dict[str, Any]]
    tools: Sequence[dict[str, Any]]
    instructions: str
    language: str | None
    user_texts: Sequence[str] = ()
    """What the visitor said (typed text or transcribed audio) since the model's last completed reply, oldest
    first: a reply cancelled or truncated by barge-in does not count, so its user items are answered again with
    those that followed."""
    function_outputs: Sequence[dict[str, Any]] = ()
    """`function_call_output` items added since the last assistant output, oldest first."""


class Brain(abc.ABC):
    """Produces the emulator's transcripts, replies and speech."""

    @abc.abstractmethod
    async def transcribe(self, pcm16: bytes, language: str | None) -> str:
        """The text of committed user audio (PCM16 24 kHz)."""

    @abc.abstractmethod
    async def respond(self, context: BrainContext) -> Reply:
        """The next response: something to say or a function to call."""

    @abc.abstractmethod
    async def synthesize(self, text: str, language: str | None) -> bytes:
        """PCM16 24 kHz audio for `text`."""

    def speech_detector(self) -> Callable[[bytes], bool] | None:
        """A new session's server VAD model: whether a 20 ms frame (PCM16 24 kHz) is speech, in stream order.
        None: the emulator's energy VAD (enough for tones and silence, not for speech in a noisy lobby)."""
        return None


class ScriptedBrain(Brain):
    """Replies with `steps` in order, then `default` forever; transcripts come from `transcripts` in order.

    Speech is a deterministic tone whose length scales with the text (`speech_for_text`).
    """

    def __init__(
        self,
        steps: Sequence[Reply] = (),
        *,
        transcripts: Sequence[str] = (),
        default: Reply = Say("承知しました。"),
    ) -> None:
        self.steps = list(steps)
        self.transcripts = list(transcripts)
        self.default = default
        self.contexts: list[BrainContext] = []

    async def transcribe(self, pcm16: bytes, language: str | None) -> str:
        return self.transcripts.pop(0) if self.transcripts else ""

    async def respond(self, context: BrainContext) -> Reply:
        self.contexts.append(context)
        return self.steps.pop(0) if self.steps else self.default

    async def synthesize(self, text: str, language: str | None) -> bytes:
        return speech_for_text(text)


_NOT_UNDERSTOOD = {
    "ja": "恐れ入ります、もう一度お願いできますか。",
    "en": "Sorry, could you say that again?",
}


class ReceptionBrain(Brain):
    """A local stand-in for the model, built from injected speech and understanding callables.

    * `transcribe(pcm16_24k, language) -> str` turns the visitor's audio into text;
    * `understand(text) -> (tool_name, args) | None` picks the tool call for it;
    * `synthesize(text, language) -> pcm16_24k` speaks the reply.

    The callables are blocking (speech engines are CPU-bound) and run in a worker thread. Like the model, it
    answers everything the visitor said since its last completed reply, understood as one utterance (a sentence
    split by a pause, or a reply cut by barge-in and the words that cut it). With nothing new understood after a
    function output it says the output's `reply` (the reception tools' contract) or, failing that, the raw
    output; text it cannot understand gets a polite request to repeat.
    """

    def __init__(
        self,
        transcribe: Callable[[bytes, str | None], str],
        understand: Callable[[str], tuple[str, dict[str, Any]] | None],
        synthesize: Callable[[str, str | None], bytes],
        *,
        language: str = "ja",
    ) -> None:
        self._transcribe = transcribe
        self._understand = understand
        self._synthesize = synthesize
        self.language = language

    async def transcribe(self, pcm16: bytes, language: str | None) -> str:
        return await asyncio.to_thread(self._transcribe, pcm16, language or self.language)

    async def respond(self, context: BrainContext) -> Reply:
        text = " ".join(part.strip() for part in context.user_texts if part.strip())
        understood = await asyncio.to_thread(self._understand, text) if text else None
        if understood is not None:
            name, arguments = understood
            return CallFunction(name, arguments)
        if context.function_outputs:
            return self.after_output(context.function_outputs[-1], context.language or self.language)
        return self.not_understood(context)

    def not_understood(self, context: BrainContext) -> Reply:
        """What to say when the visitor's words gave nothing (or were not made out): a request to repeat."""
        return Say(_NOT_UNDERSTOOD.get(context.language or self.language, _NOT_UNDERSTOOD["en"]))

    def after_output(self, item: dict[str, Any], language: str) -> Reply:
        """What to say about a function's output when the visitor said nothing new: its reply."""
        return Say(_reply_text(item.get("output", "")))

    async def synthesize(self, text: str, language: str | None) -> bytes:
        return await asyncio.to_thread(self._synthesize, text, language or self.language)


def _reply_text(output: str) -> str:
    """The `reply` field of a JSON function output, else the output as it is."""
    try:
        data = json.loads(output)
    except ValueError:
        return output
    if isinstance(data, dict) and isinstance(data.get("reply"), str):
        return data["reply"]
    return output
