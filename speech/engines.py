"""One set of speech engines per process: a thread-safe lazy singleton with ``warm_up()``.

Engines are blocking. Call them from async code with ``await asyncio.to_thread(...)``; they
serialise themselves (one lock per model), so several sessions may share them safely. VADs are
stateful and cheap, so each session gets its own from ``vad_factory`` / ``new_segmenter``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .audio import RECOGNITION_SAMPLE_RATE
from .stt import DEFAULT_OPENAI_BASE_URL, OpenAISTT, SpeechToText, WhisperSTT
from .synthesis_cache import SynthesisCache
from .tts import LocalTTS, OpenAITTS, OpenJTalkTTS, PiperTTS, TextToSpeech
from .vad import UtteranceSegmenter, VoiceActivityDetector, make_silero_factory

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGINE_KINDS = ("local", "openai")


@dataclass
class SpeechEngines:
    kind: str
    stt: SpeechToText
    tts: TextToSpeech
    vad_factory: Callable[[], VoiceActivityDetector]
    load_seconds: dict[str, float] = field(default_factory=dict)
    _warm_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warm: bool = field(default=False, repr=False)
    phrases: SynthesisCache = field(init=False, repr=False)  # fixed phrases, synthesised once per voice

    def __post_init__(self) -> None:
        self.phrases = SynthesisCache(self.tts)

    @property
    def warm(self) -> bool:
        """Whether ``warm_up()`` has finished: every model is loaded."""
        return self._warm

    def new_segmenter(self, **kwargs) -> UtteranceSegmenter:
        """A fresh segmenter (own VAD state) for one session; kwargs as UtteranceSegmenter."""
        return UtteranceSegmenter(self.vad_factory(), **kwargs)

    def warm_up(self) -> dict[str, float]:
        """Load every model now and run one tiny inference each, so the first visitor does
        not pay for it. Idempotent; returns seconds per step. Blocking (run it in a thread)."""
        with self._warm_lock:
            if self._warm:
                return dict(self.load_seconds)
            t = time.perf_counter()
            self.vad_factory()
            self.load_seconds["vad"] = time.perf_counter() - t
            if self.kind == "local":
                assert isinstance(self.stt, WhisperSTT) and isinstance(self.tts, LocalTTS)
                t = time.perf_counter()
                self.stt.load()
                self.load_seconds["stt_load"] = time.perf_counter() - t
                t = time.perf_counter()
                self.tts.japanese.load()
                self.load_seconds["tts_ja_load"] = time.perf_counter() - t
                t = time.perf_counter()
                self.tts.english.load()
                self.load_seconds["tts_en_load"] = time.perf_counter() - t
                t = time.perf_counter()
                self.stt.transcribe(bytes(RECOGNITION_SAMPLE_RATE), "ja")  # 0.5 s of silence
                self.tts.synthesize("はい。", "ja")
                self.tts.synthesize("Yes.", "en")
                self.load_seconds["first_inference"] = time.perf_counter() - t
            self._warm = True
            return dict(self.load_seconds)

    def close(self) -> None:
        for engine in (self.stt, self.tts):
            close = getattr(engine, "close", None)
            if close:
                close()


_lock = threading.Lock()
_instances: dict[tuple, SpeechEngines] = {}


def get_speech_engines(
    engine_kind: str = "local",
    *,
    whisper_dir: Path | str | None = None,
    openai_api_key: str | None = None,
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL,
    openai_stt_model: str = "gpt-4o-mini-transcribe",
    openai_tts_model: str = "gpt-4o-mini-tts",
    openai_voice: str = "alloy",
    piper_in_process: bool = False,
) -> SpeechEngines:
    """The process-wide engines of a kind. Cheap to call: the first call builds them (models
    load lazily, or at ``warm_up()``), later calls return the same object.

    ``local``: Silero VAD + Whisper base + Open JTalk (ja) / Piper worker (en); fully offline.
    ``openai``: Silero VAD (local) + OpenAI transcription and speech; needs ``openai_api_key``.
    """
    if engine_kind not in ENGINE_KINDS:
        raise ValueError(f"engine_kind must be one of {ENGINE_KINDS}, not {engine_kind!r}")
    if engine_kind == "openai" and not openai_api_key:
        raise ValueError("the openai speech engines need an API key")
    key = (
        engine_kind,
        str(whisper_dir or ""),
        openai_base_url,
        openai_stt_model,
        openai_tts_model,
        openai_voice,
        piper_in_process,
        # keyed by a hash of the key so a rotated key builds new clients
        hash(openai_api_key) if openai_api_key else None,
    )
    with _lock:
        engines = _instances.get(key)
        if engines is None:
            vad_factory = make_silero_factory()
            if engine_kind == "local":
                engines = SpeechEngines(
                    kind="local",
                    stt=WhisperSTT(whisper_dir),
                    tts=LocalTTS(OpenJTalkTTS(), PiperTTS(in_process=piper_in_process)),
                    vad_factory=vad_factory,
                )
            else:
                engines = SpeechEngines(
                    kind="openai",
                    stt=OpenAISTT(openai_api_key or "", base_url=openai_base_url, model=openai_stt_model),
                    tts=OpenAITTS(
                        openai_api_key or "", base_url=openai_base_url, model=openai_tts_model, voice=openai_voice
                    ),
                    vad_factory=vad_factory,
                )
            _instances[key] = engines
        return engines


def legacy_engines() -> SpeechEngines:
    """The process's speech engines, as the settings choose them (local unless a key is set)."""
    return get_speech_engines(
        settings.LEGACY_ENGINES,
        whisper_dir=settings.WHISPER_MODEL_DIR,
        openai_api_key=settings.OPENAI_API_KEY or None,
        openai_base_url=settings.OPENAI_BASE_URL,
    )
