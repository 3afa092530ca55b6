"""LegacyAudioService: the classic voice path of one kiosk session.

Voice activity detection → speech-to-text → the reception workflow → text-to-speech, streamed
back sentence by sentence. Typed input takes the same path from the workflow on. Engines are
blocking and shared by the process, so every call to them runs in a worker thread; turns of
one session run one at a time, and new speech during playback stops the playback (barge-in).

Every recording passes the VAD before recognition (a replayed one too): audio without speech is
never transcribed. Recognition starts at a short pause and its result is kept when the visitor
stays quiet until the end-of-speech silence. Words Whisper is unsure of, or none, are not acted
on: the kiosk asks the pending question again, once, and the visit is left as it was. Fixed
phrases (greeting, prompts) are synthesised once per voice and reused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import TypeVar

from django.conf import settings

from core.blocking import run_blocking
from core.garbage import freeze_startup_heap
from core.timing import TurnTiming, upstream_call, upstream_clock, upstream_seconds
from realtime import client as realtime_client
from realtime.kiosk import KioskOutput, ProtocolError
from reception import workflow
from reception.workflow.names import recognition_hint
from reception.workflow.prompts import say, templates
from speech.audio import KIOSK_SAMPLE_RATE
from speech.engines import SpeechEngines, legacy_engines
from speech.stt import Transcript
from speech.tts import split_sentences
from speech.vad import SpeechPaused, SpeechStarted, Utterance, UtteranceSegmenter, utterances_in

logger = logging.getLogger(__name__)

AUDIO_CHUNK_BYTES = 4800  # 100 ms of PCM16 at 24 kHz per binary frame


TurnCallback = Callable[..., None]
T = TypeVar("T")


@functools.cache
def fixed_sentences(language: str) -> frozenset[str]:
    """The sentences the receptionist says word for word whoever the visitor is: safe to keep synthesised."""
    pieces = (split_sentences(template, language) for template in templates(language))
    return frozenset(sentence for sentence in itertools.chain.from_iterable(pieces) if "{" not in sentence)


def warm_up() -> None:
    """The language understanding, then (SPEECH_WARM_UP) the speech models and the greeting's audio, so the
    first visitor waits for none of them. A failure is logged: the first turns load what is missing."""
    try:
        workflow.warm_up()
        realtime_client.warm_up()
        if settings.SPEECH_WARM_UP:
            engines = legacy_engines()
            seconds = engines.warm_up()
            logger.info("speech engines ready: %s", {step: round(value, 2) for step, value in seconds.items()})
            for language in ("ja", "en"):
                for sentence in split_sentences(say("greeting", language), language):
                    engines.phrases.synthesize(sentence, language)
    except Exception:
        logger.exception("warm-up failed; the first turns will load what is missing (or report the error)")


def warm_up_in_background() -> None:
    """At server start, in a background thread: `warm_up`, then what start-up made is frozen out of the garbage
    collector's walks (`core.garbage`)."""

    def warm_up_and_freeze() -> None:
        warm_up()
        freeze_startup_heap()

    threading.Thread(target=warm_up_and_freeze, name="warm-up", daemon=True).start()


def decode_audio_append(audio: str) -> bytes:
    """The PCM16 bytes of an `input_audio.append` message."""
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_audio", "audio must be base64-encoded PCM16.") from None
    if len(pcm) % 2:
        raise ProtocolError("invalid_audio", "PCM16 audio has an even number of bytes.")
    return pcm


class LegacyAudioService:
    """One session on the Legacy path; `output` receives transcripts, visit updates and audio."""

    mode = "legacy"

    def __init__(
        self,
        session_id: str,
        language: str,
        output: KioskOutput,
        *,
        speak: bool = False,
        on_turn: TurnCallback | None = None,
        voices: Mapping[str, str] | None = None,
    ) -> None:
        self.session_id = session_id
        self.language = language
        self.output = output
        self.speak = speak  # set once the visitor talks: a talking visitor hears the answers
        self.on_turn = on_turn  # on_turn(ttfa_ms=, upstream_ms=, server_ms=, usage=, ok=) after each answered turn
        self.voices = voices  # language -> the local voice it is spoken in (the kiosk's); None: the engines' defaults
        self._engines: SpeechEngines | None = None
        self._segmenter: UtteranceSegmenter | None = None
        self._unfed = bytearray()  # kiosk audio not yet given to the segmenter (under AUDIO_CHUNK_BYTES)
        self._turn_lock = asyncio.Lock()
        self._playback: asyncio.Task | None = None
        self._first_audio: float | None = None
        self._upstream_at_first_audio = 0.0  # seconds spent in the engines when the first audio left
        self._spoken_bytes = 0
        self._tasks: set[asyncio.Task] = set()
        self._guess: tuple[SpeechPaused, asyncio.Task] | None = None  # recognition started at a pause
        self._reasked = False  # the last turn asked again; more unclear speech is then let pass

    async def open(self, kiosk_id: int | None) -> None:
        """Greet a new session, or repeat the pending question of a resumed one."""
        async with self._turn_lock:
            turn = await run_blocking(workflow.start)(self.session_id, self.language, kiosk_id)
            await self._answer(turn)

    async def handle_text(self, text: str) -> None:
        """A typed utterance, answered in the background so a cancel can still arrive."""
        self._spawn(self._text_turn(text))

    async def feed_audio(self, pcm16: bytes) -> None:
        """Kiosk audio (PCM16 24 kHz); utterances found in it are answered in the background."""
        self.speak = True
        self._unfed += pcm16
        if len(self._unfed) >= AUDIO_CHUNK_BYTES:  # one thread hop per 100 ms, not per 20 ms frame
            await self._feed_segmenter()

    async def _feed_segmenter(self) -> None:
        segmenter = await self._get_segmenter()
        pcm16, self._unfed = bytes(self._unfed), bytearray()
        for event in await asyncio.to_thread(segmenter.feed, pcm16):
            if isinstance(event, SpeechStarted):
                await self.interrupt()
            elif isinstance(event, SpeechPaused):
                self._recognise_early(event)
            else:
                self._spawn(self._voice_turn(event, self._early_transcript(event)))

    async def commit(self) -> None:
        """Push-to-talk release: answer what was said since the last utterance."""
        if self._unfed:
            await self._feed_segmenter()
        segmenter = await self._get_segmenter()
        utterance = await asyncio.to_thread(segmenter.flush)
        if utterance is None:
            raise ProtocolError("input_audio_empty", "No speech was heard; please speak while holding the button.")
        self._spawn(self._voice_turn(utterance))

    async def answer_recording(self, pcm16: bytes) -> bool:
        """Answer a whole recorded utterance (PCM16 24 kHz), e.g. one the Realtime path left unanswered.

        The speech the VAD finds in it is answered as one turn; False (and no answer) when it holds none."""
        self.speak = True
        engines = await self._get_engines()
        segmenter = await asyncio.to_thread(engines.new_segmenter, silence_ms=settings.LEGACY_END_OF_SPEECH_SILENCE_MS)
        found = await asyncio.to_thread(utterances_in, segmenter, pcm16)
        if not found:
            logger.info(
                "session %s: a %.1f s recording held no speech", self.session_id, len(pcm16) / 2 / KIOSK_SAMPLE_RATE
            )
            return False
        speech = b"".join(utterance.pcm16_16k for utterance in found)
        self._spawn(self._voice_turn(Utterance(speech, found[0].start_s, found[-1].end_s, "replay")))
        return True

    async def interrupt(self) -> None:
        """Barge-in or `response.cancel`: stop the reply being played, at once."""
        if self._playback and not self._playback.done():
            self._playback.cancel()

    async def close(self) -> None:
        """Stop everything this session started; nothing is left running."""
        self._guess = None
        tasks = [*self._tasks, *([self._playback] if self._playback else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _get_segmenter(self) -> UtteranceSegmenter:
        if self._segmenter is None:
            engines = await self._get_engines()
            self._segmenter = await asyncio.to_thread(
                engines.new_segmenter,
                silence_ms=settings.LEGACY_END_OF_SPEECH_SILENCE_MS,
                pause_ms=settings.LEGACY_SPECULATIVE_SILENCE_MS,
            )
        return self._segmenter

    async def _get_engines(self) -> SpeechEngines:
        if self._engines is None:
            self._engines = await asyncio.to_thread(legacy_engines)
        return self._engines

    def _spawn(self, coroutine: Awaitable[T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._turn_finished)
        return task

    def _turn_finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("session %s: voice turn failed", self.session_id, exc_info=task.exception())

    async def _text_turn(self, text: str) -> None:
        received = time.perf_counter()
        with upstream_clock():
            async with self._turn_lock:
                await self._answer_visitor(text, received)

    def _recognise_early(self, pause: SpeechPaused) -> None:
        """The visitor paused: start recognising what was said so far (the end of speech may follow).

        At most one early recognition runs at a time: one already in a worker thread cannot be stopped, and
        another would only queue behind it for the engine."""
        if self._guess is not None and not self._guess[1].done():
            return  # the one before is stale but still decoding: this pause is not recognised early
        self._guess = (pause, self._spawn(self._recognise(pause.utterance)))

    def _early_transcript(self, utterance: Utterance) -> asyncio.Task[Transcript] | None:
        """The recognition started at the pause before `utterance` ended, if it heard the same audio."""
        guess, self._guess = self._guess, None
        if guess is None:
            return None
        if guess[0].same_speech(utterance):
            return guess[1]
        guess[1].cancel()  # the visitor spoke again after the pause: that recognition heard too little
        return None

    async def _recognise(self, utterance: Utterance) -> Transcript:
        engines = await self._get_engines()
        hint = await run_blocking(recognition_hint)(self.language)
        return await asyncio.to_thread(_in_engine, engines.stt.transcribe, utterance.pcm16_16k, self.language, hint)

    async def _voice_turn(self, utterance: Utterance, early: asyncio.Task[Transcript] | None = None) -> None:
        # The visitor stopped speaking when the silence that ended the utterance began.
        end_of_speech = time.perf_counter() - self._silence_since(utterance)
        with upstream_clock():
            async with self._turn_lock:
                if early is not None:
                    with upstream_call():  # what is left of the early recognition is waited for
                        transcript = await early
                else:
                    transcript = await self._recognise(utterance)
                if transcript.confident(settings.LEGACY_NO_SPEECH_THRESHOLD, settings.LEGACY_LOGPROB_THRESHOLD):
                    self._reasked = False
                    await self._answer_visitor(transcript.text.strip(), end_of_speech, utterance.duration)
                elif not self._reasked:
                    self._reasked = True
                    await self._ask_again(transcript, end_of_speech, utterance.duration)
                else:
                    logger.info("session %s: %.1f s of unclear audio let pass", self.session_id, utterance.duration)

    def _silence_since(self, utterance: Utterance) -> float:
        if self._segmenter is None or utterance.reason == "replay":
            return 0.0
        return max(0.0, self._segmenter.stream_time - utterance.end_s)

    async def _ask_again(self, transcript: Transcript, started: float, heard_seconds: float) -> None:
        """Words that could not be made out: the pending question again; the visit is not touched."""
        logger.info(
            "session %s: %.1f s of speech not acted on (no speech %s, log-probability %s)",
            self.session_id,
            heard_seconds,
            transcript.no_speech_prob,
            transcript.avg_logprob,
        )
        turn = await run_blocking(workflow.reask)(self.session_id)
        await self._report(turn, started, heard_seconds)

    async def _answer_visitor(self, text: str, started: float, heard_seconds: float = 0.0) -> None:
        """Answer one visitor turn (inside its `upstream_clock()`), then report it with its timing."""
        await self.output.send_message({"type": "transcript", "role": "visitor", "text": text, "final": True})
        turn = await run_blocking(workflow.handle_text)(self.session_id, text)
        await self._report(turn, started, heard_seconds)

    async def _report(self, turn: workflow.TurnResult, started: float, heard_seconds: float) -> None:
        """Say `turn`'s reply, then report the turn with its timing."""
        status, first_audio, spoken_seconds = await self._answer(turn)
        if self.on_turn is not None:
            # Without audio, the turn ends when the reply is done, and every engine call so far preceded it.
            upstream = self._upstream_at_first_audio if first_audio is not None else upstream_seconds()
            timing = TurnTiming.split(((first_audio or time.perf_counter()) - started) * 1000, upstream * 1000)
            usage = {"audio_input_seconds": round(heard_seconds, 3), "audio_output_seconds": round(spoken_seconds, 3)}
            self.on_turn(
                **asdict(timing),
                usage={**usage, **self._engine_models(heard_seconds, spoken_seconds)},
                ok=status != "failed",
            )

    def _engine_models(self, heard_seconds: float, spoken_seconds: float) -> dict[str, str]:
        """The priced models a turn used; local engines cost nothing and name none."""
        if self._engines is None or self._engines.kind != "openai":
            return {}
        models = {"tts_model": self._engines.tts.model} if spoken_seconds else {}
        return {**models, "stt_model": self._engines.stt.model} if heard_seconds else models

    async def _answer(self, turn: workflow.TurnResult) -> tuple[str, float | None, float]:
        """Show the reply and what is collected, speak it if the visitor talks, then mark the turn done.

        Returns the turn's status, when its first audio left (None without audio) and seconds spoken.
        """
        await self.output.send_message({"type": "transcript", "role": "assistant", "text": turn.reply, "final": True})
        await self.output.send_message({"type": "visit.updated", **turn.visit})
        status, self._first_audio, self._spoken_bytes = "completed", None, 0
        if self.speak and turn.reply:
            self._playback = asyncio.ensure_future(self._play(turn.reply))
            await asyncio.wait({self._playback})
            if self._playback.cancelled():
                status = "cancelled"
            elif self._playback.exception() is not None:
                logger.error(
                    "session %s: speech synthesis failed", self.session_id, exc_info=self._playback.exception()
                )
                status = "failed"
        await self.output.send_message({"type": "response.done", "status": status})
        return status, self._first_audio, self._spoken_bytes / 2 / KIOSK_SAMPLE_RATE

    async def _play(self, text: str) -> None:
        engines = await self._get_engines()
        tts = engines.tts_for(self.voices)
        fixed = fixed_sentences(self.language)
        for sentence in split_sentences(text, self.language):
            # A fixed phrase is kept per voice: the cache tells this session's by `tts`.
            synthesize = functools.partial(engines.phrases.synthesize, tts=tts) if sentence in fixed else tts.synthesize
            pcm = await asyncio.to_thread(_in_engine, synthesize, sentence, self.language)
            for start in range(0, len(pcm), AUDIO_CHUNK_BYTES):
                chunk = pcm[start : start + AUDIO_CHUNK_BYTES]
                if self._first_audio is None:
                    self._first_audio = time.perf_counter()
                    self._upstream_at_first_audio = upstream_seconds()
                await self.output.send_audio(chunk)
                self._spoken_bytes += len(chunk)


def _in_engine(call: Callable[..., T], *args: object) -> T:
    """`call(*args)` (a speech engine, in a worker thread), its time counted as upstream for the turn."""
    with upstream_call():
        return call(*args)
