"""One set of speech engines per process: a thread-safe lazy singleton with ``warm_up()``.

Engines are blocking. Call them from async code with ``await asyncio.to_thread(...)``; they
serialise themselves (one lock per model), so several sessions may share them safely. VADs are
stateful and cheap, so each session gets its own from ``vad_factory`` / ``new_segmenter``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .audio import RECOGNITION_SAMPLE_RATE
from .stt import DEFAULT_OPENAI_BASE_URL, OpenAISTT, SpeechToText, WhisperSTT
from .synthesis_cache import SynthesisCache
from .tts import LocalTTS, OpenAITTS, TextToSpeech, local_engine
from .vad import UtteranceSegmenter, VoiceActivityDetector, make_silero_factory
from .voices import DEFAULT_LOCAL_VOICES, LOCAL_VOICES, check_local_voice

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGINE_KINDS = ("local", "openai")


@dataclass
class SpeechEngines:
    kind: str
    stt: SpeechToText
    tts: TextToSpeech
    vad_factory: Callable[[], VoiceActivityDetector]
    # The local voice of each language unless a session chooses another (`tts_for`), and the engines of the voices
    # in use by name (the defaults' are `tts`'s own); a Piper voice runs in process only when this says so.
    voices: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LOCAL_VOICES))
    voice_engines: dict[str, TextToSpeech] = field(default_factory=dict, repr=False)
    piper_in_process: bool = False
    load_seconds: dict[str, float] = field(default_factory=dict)
    _warm_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warm: bool = field(default=False, repr=False)
    _voices_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    phrases: SynthesisCache = field(init=False, repr=False)  # fixed phrases, synthesised once per voice

    def __post_init__(self) -> None:
        self.phrases = SynthesisCache(self.tts)

    @property
    def warm(self) -> bool:
        """Whether ``warm_up()`` has finished: every model is loaded."""
        return self._warm

    def tts_for(self, voices: Mapping[str, str] | None) -> TextToSpeech:
        """The text-to-speech of a session that chose `voices` (language -> local voice name, e.g. its kiosk's):
        each language in its chosen voice, in the default one where the session chose none or a name that is no
        voice of that language. Only the local engines have voices to choose from; others are `tts` as it is."""
        chosen = {
            language: name
            for language, name in (voices or {}).items()
            if name != self.voices.get(language) and name in LOCAL_VOICES and LOCAL_VOICES[name].language == language
        }
        if self.kind != "local" or not chosen:
            return self.tts
        assert isinstance(self.tts, LocalTTS)
        japanese = self._voice_engine(chosen["ja"]) if "ja" in chosen else self.tts.japanese
        english = self._voice_engine(chosen["en"]) if "en" in chosen else self.tts.english
        return LocalTTS(japanese, english)

    def _voice_engine(self, name: str) -> TextToSpeech:
        """The engine of the voice `name`, made once (it loads its model at first use) and shared by all sessions."""
        with self._voices_lock:
            engine = self.voice_engines.get(name)
            if engine is None:
                engine = self.voice_engines[name] = local_engine(name, piper_in_process=self.piper_in_process)
            return engine

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
    voices: Mapping[str, str] | None = None,
) -> SpeechEngines:
    """The process-wide engines of a kind. Cheap to call: the first call builds them (models
    load lazily, or at ``warm_up()``), later calls return the same object.

    ``local``: Silero VAD + Whisper base + Open JTalk (ja) / Piper worker (en); fully offline.
    ``voices`` (language -> a local voice of speech/voices.py) chooses the default voices; a session may
    choose others (``SpeechEngines.tts_for``).
    ``openai``: Silero VAD (local) + OpenAI transcription and speech; needs ``openai_api_key``.
    """
    if engine_kind not in ENGINE_KINDS:
        raise ValueError(f"engine_kind must be one of {ENGINE_KINDS}, not {engine_kind!r}")
    if engine_kind == "openai" and not openai_api_key:
        raise ValueError("the openai speech engines need an API key")
    voices = {**DEFAULT_LOCAL_VOICES, **(voices or {})}
    for language, name in voices.items():
        check_local_voice(name, language)
    key = (
        engine_kind,
        str(whisper_dir or ""),
        openai_base_url,
        openai_stt_model,
        openai_tts_model,
        openai_voice,
        piper_in_process,
        tuple(sorted(voices.items())),
        # keyed by a hash of the key so a rotated key builds new clients
        hash(openai_api_key) if openai_api_key else None,
    )
    with _lock:
        engines = _instances.get(key)
        if engines is None:
            vad_factory = make_silero_factory()
            if engine_kind == "local":
                engines = _local_engines(whisper_dir, voices, piper_in_process, vad_factory)
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


def _local_engines(
    whisper_dir: Path | str | None,
    voices: dict[str, str],
    piper_in_process: bool,
    vad_factory: Callable[[], VoiceActivityDetector],
) -> SpeechEngines:
    """The offline engines, speaking each language in its voice of `voices` unless a session chooses another."""
    voice_engines = {name: local_engine(name, piper_in_process=piper_in_process) for name in voices.values()}
    return SpeechEngines(
        kind="local",
        stt=WhisperSTT(whisper_dir),
        tts=LocalTTS(voice_engines[voices["ja"]], voice_engines[voices["en"]]),
        vad_factory=vad_factory,
        voices=voices,
        voice_engines=voice_engines,
        piper_in_process=piper_in_process,
    )


def legacy_engines() -> SpeechEngines:
    """The process's speech engines, as the settings choose them (local unless a key is set), speaking the local
    voices of LEGACY_VOICE_JA and LEGACY_VOICE_EN unless a session chooses others."""
    return get_speech_engines(
        settings.LEGACY_ENGINES,
        whisper_dir=settings.WHISPER_MODEL_DIR,
        openai_api_key=settings.OPENAI_API_KEY or None,
        openai_base_url=settings.OPENAI_BASE_URL,
        voices={"ja": settings.LEGACY_VOICE_JA, "en": settings.LEGACY_VOICE_EN},
    )
