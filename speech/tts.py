"""Text to speech: Open JTalk (ja), Piper (en, out of process), OpenAI; all PCM16 24 kHz mono."""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess  # nosec B404  # only for our own Piper script, with a fixed argv
import sys
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .audio import KIOSK_SAMPLE_RATE, float32_to_pcm16, pcm16_to_float32, resample
from .model_files import openjtalk_paths, piper_voice_paths
from .stt import DEFAULT_OPENAI_BASE_URL, SpeechEngineError, _lang, _remote_error
from .voices import DEFAULT_LOCAL_VOICES, LOCAL_VOICES

logger = logging.getLogger(__name__)

# -- sentence splitting ------------------------------------------------------------------
_JA_END = "。！？!?．"
_JA_SENTENCE_END = re.compile(rf"[{_JA_END}]+[」』）)\]]*|\n+")
_EN_ABBREV = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "st",
    "no",
    "vs",
    "etc",
    "inc",
    "ltd",
    "co",
    "corp",
    "jr",
    "sr",
    "mt",
    "e.g",
    "i.e",
    "a.m",
    "p.m",
}
_EN_CANDIDATE = re.compile(r"[.!?。！？]+[\"')\]]*(?=\s|$)|\n+")


def split_sentences(text: str, language: str) -> list[str]:
    """Split text into sentences for sentence-by-sentence synthesis (first audio sooner).

    Japanese: after 。！？ (and ASCII !?), keeping closing brackets with their sentence.
    English: after . ! ? followed by whitespace, except after common abbreviations (Mr., Dr.,
    a.m. ...), so "Mr. Suzuki" is not cut. Newlines always split. Empty pieces are dropped.
    """
    text = (text or "").strip()
    if not text:
        return []
    if _lang(language) == "ja":
        parts, start = [], 0
        for m in _JA_SENTENCE_END.finditer(text):
            parts.append(text[start : m.end()])
            start = m.end()
        parts.append(text[start:])
        return [p.strip() for p in parts if p.strip()]
    out: list[str] = []
    start = 0
    for m in _EN_CANDIDATE.finditer(text):
        end = m.end()
        piece = text[start:end]
        if m.group().startswith(".") and not m.group().startswith("\n"):
            word = re.search(r"([A-Za-z.]+)\.[\"')\]]*$", piece)
            if word and (word.group(1).lower() in _EN_ABBREV or len(word.group(1)) == 1):
                continue
        if piece.strip():
            out.append(piece.strip())
        start = end
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


@runtime_checkable
class TextToSpeech(Protocol):
    sample_rate: int  # always KIOSK_SAMPLE_RATE (24 kHz)

    def synthesize(self, text: str, language: str) -> bytes:
        """PCM16 LE mono at 24 kHz; b"" for empty text."""
        ...


# -- Japanese: Open JTalk ------------------------------------------------------------------
class OpenJTalkTTS:
    """pyopenjtalk (lemon prebuilt wheel: NAIST dictionary + HTS "Mei" voice, CC-BY-3.0:
    attribution required) speaking the HTS voice `voice` names (speech/voices.py). Synthesises at the
    voice's native 48 kHz (forcing another rate ruins it) and resamples to 24 kHz with soxr."""

    sample_rate = KIOSK_SAMPLE_RATE

    def __init__(self, *, voice: str = DEFAULT_LOCAL_VOICES["ja"], speed: float = 1.0, verify: bool = True) -> None:
        self.voice = voice
        self.speed = speed
        self.verify = verify
        self._lock = threading.Lock()
        self._engine = None  # pyopenjtalk's HTSEngine over this voice's file, once loaded
        self.load_seconds: float | None = None

    def load(self) -> None:
        with self._lock:
            if self._engine is not None:
                return
            t0 = time.perf_counter()
            dic_dir, htsvoice = openjtalk_paths(verify=self.verify, voice=LOCAL_VOICES[self.voice].files[0])
            # Point pyopenjtalk at the verified files; it downloads only if the dir is missing.
            os.environ.setdefault("OPEN_JTALK_DICT_DIR", str(dic_dir))
            import pyopenjtalk

            if not Path(pyopenjtalk.OPEN_JTALK_DICT_DIR.decode()).is_dir():
                raise SpeechEngineError("pyopenjtalk dictionary directory is missing")
            engine = pyopenjtalk.HTSEngine(str(htsvoice).encode())
            engine.synthesize(pyopenjtalk.extract_fullcontext("あ"))  # builds the global Open JTalk front end
            self._engine = engine
            self.load_seconds = time.perf_counter() - t0
        atexit.register(self.close)  # freed while the interpreter is whole: at its finalisation, freeing it fails

    def close(self) -> None:
        with self._lock:
            self._engine = None

    def synthesize(self, text: str, language: str = "ja") -> bytes:
        text = (text or "").strip()
        if not text:
            return b""
        self.load()
        import pyopenjtalk

        labels = pyopenjtalk.extract_fullcontext(text)  # the front end is shared and has its own lock
        with self._lock:
            self._engine.set_speed(self.speed)
            wav, sr = self._engine.synthesize(labels), self._engine.get_sampling_frequency()
        samples = np.asarray(wav, dtype=np.float32) / 32768.0
        return float32_to_pcm16(resample(samples, int(sr), KIOSK_SAMPLE_RATE))


# -- English: Piper (GPL) in a worker process -----------------------------------------------
_WORKER_SCRIPT = Path(__file__).with_name("piper_worker.py")


class PiperTTS:
    """Piper speaking the voice `voice` names (speech/voices.py; the en_US "joe" voice, CC0, by default),
    deterministic (noise_scale = noise_w_scale = 0).

    piper-tts is GPL-3.0-or-later, so by default it runs in a worker process (started once,
    lazily, restarted if it dies) speaking a small stdin/stdout protocol; this module never
    imports piper. ``in_process=True`` imports it here instead (only for measurement).
    22.05 kHz output is resampled to 24 kHz with soxr. Requests are serialised by a lock.
    """

    sample_rate = KIOSK_SAMPLE_RATE

    def __init__(
        self,
        *,
        voice: str = DEFAULT_LOCAL_VOICES["en"],
        in_process: bool = False,
        length_scale: float = 1.0,
        noise_scale: float = 0.0,
        noise_w_scale: float = 0.0,
        threads: int = 2,
        timeout: float = 30.0,
        verify: bool = True,
    ) -> None:
        self.voice = voice
        self.in_process = in_process
        self.length_scale = length_scale
        self.noise_scale = noise_scale
        self.noise_w_scale = noise_w_scale
        self.threads = threads
        self.timeout = timeout
        self.verify = verify
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._voice = None
        self._rate: int | None = None
        self.load_seconds: float | None = None
        self.worker_load_seconds: float | None = None

    # lifecycle
    def load(self) -> None:
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self.in_process:
            if self._voice is None:
                t0 = time.perf_counter()
                model, config = piper_voice_paths(verify=self.verify, voice=LOCAL_VOICES[self.voice].files)
                from piper import PiperVoice  # GPL: only on explicit request

                self._voice = PiperVoice.load(model, config_path=config)
                self._rate = self._voice.config.sample_rate
                self.load_seconds = time.perf_counter() - t0
            return
        if self._proc is not None and self._proc.poll() is None:
            return
        t0 = time.perf_counter()
        model, config = piper_voice_paths(verify=self.verify, voice=LOCAL_VOICES[self.voice].files)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "DJANGO"))}
        env["HF_HUB_OFFLINE"] = "1"
        env["OMP_NUM_THREADS"] = str(self.threads)
        self._proc = subprocess.Popen(  # noqa: S603  # nosec B603  # fixed argv, our own script
            [
                sys.executable,
                "-I",
                str(_WORKER_SCRIPT),
                "--model",
                str(model),
                "--config",
                str(config),
                "--threads",
                str(self.threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
            close_fds=True,
        )
        hello = self._read_header()
        if not hello.get("ready"):
            self._kill()
            raise SpeechEngineError("piper worker did not start")
        self._rate = int(hello["sample_rate"])
        self.worker_load_seconds = float(hello.get("load_seconds", 0.0))
        self.load_seconds = time.perf_counter() - t0
        atexit.register(self.close)

    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=2)
        finally:
            if proc.stdout:
                proc.stdout.close()

    # pipes
    def _read_exact(self, n: int, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        chunks: list[bytes] = []
        while n > 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SpeechEngineError("piper worker timed out")
            block = os.read(fd, min(n, 1 << 20))
            if not block:
                raise SpeechEngineError("piper worker exited")
            chunks.append(block)
            n -= len(block)
        return b"".join(chunks)

    def _read_header(self) -> dict:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.timeout
        fd = self._proc.stdout.fileno()
        line = bytearray()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SpeechEngineError("piper worker timed out")
            b = os.read(fd, 1)
            if not b:
                raise SpeechEngineError("piper worker exited")
            line += b
        return json.loads(line)

    def _request(self, text: str) -> tuple[bytes, int]:
        assert self._proc is not None and self._proc.stdin is not None
        req = {
            "text": text,
            "length_scale": self.length_scale,
            "noise_scale": self.noise_scale,
            "noise_w_scale": self.noise_w_scale,
        }
        self._proc.stdin.write(json.dumps(req, ensure_ascii=False).encode() + b"\n")
        self._proc.stdin.flush()
        header = self._read_header()
        if not header.get("ok"):
            raise SpeechEngineError(f"piper worker error: {header.get('error', '?')}")
        pcm = self._read_exact(int(header["nbytes"]), time.monotonic() + self.timeout)
        return pcm, int(header["sample_rate"])

    def synthesize(self, text: str, language: str = "en") -> bytes:
        text = (text or "").strip()
        if not text:
            return b""
        with self._lock:
            self._ensure_started()
            if self.in_process:
                from piper import SynthesisConfig

                cfg = SynthesisConfig(
                    length_scale=self.length_scale, noise_scale=self.noise_scale, noise_w_scale=self.noise_w_scale
                )
                samples = np.concatenate(
                    [c.audio_float_array.astype(np.float32) for c in self._voice.synthesize(text, cfg)]
                    or [np.zeros(0, np.float32)]
                )
                rate = self._rate or 22050
            else:
                try:
                    pcm, rate = self._request(text)
                except (SpeechEngineError, OSError, ValueError):
                    # the worker died or hung: restart it once and retry
                    self._kill()
                    self._ensure_started()
                    pcm, rate = self._request(text)
                samples = pcm16_to_float32(pcm)
        return float32_to_pcm16(resample(samples, rate, KIOSK_SAMPLE_RATE))


# -- routing and cloud ------------------------------------------------------------------
def local_engine(voice: str, *, piper_in_process: bool = False) -> TextToSpeech:
    """The engine that speaks the local voice `voice` (a name of speech/voices.py); it loads at first use."""
    if LOCAL_VOICES[voice].engine == "openjtalk":
        return OpenJTalkTTS(voice=voice)
    return PiperTTS(voice=voice, in_process=piper_in_process)


class LocalTTS:
    """Routes ``ja`` to Open JTalk and ``en`` to Piper."""

    sample_rate = KIOSK_SAMPLE_RATE

    def __init__(self, japanese: TextToSpeech | None = None, english: TextToSpeech | None = None) -> None:
        self.japanese = japanese or OpenJTalkTTS()
        self.english = english or PiperTTS()

    def engine_for(self, language: str) -> TextToSpeech:
        lang = _lang(language)
        if lang == "ja":
            return self.japanese
        if lang == "en":
            return self.english
        raise ValueError(f"no local TTS voice for language {language!r}")

    def synthesize(self, text: str, language: str) -> bytes:
        return self.engine_for(language).synthesize(text, language)

    def load(self) -> None:
        for engine in (self.japanese, self.english):
            if hasattr(engine, "load"):
                engine.load()

    def close(self) -> None:
        for engine in (self.japanese, self.english):
            if hasattr(engine, "close"):
                engine.close()


class OpenAITTS:
    """OpenAI ``/audio/speech`` (``gpt-4o-mini-tts``, voice ``alloy``, ``response_format: pcm``
    = PCM16 LE mono 24 kHz, the kiosk format as is). Key from the caller, never logged."""

    sample_rate = KIOSK_SAMPLE_RATE

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_OPENAI_BASE_URL,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        instructions: str | None = None,
        timeout: float = 30.0,
        client=None,
    ) -> None:
        import httpx

        if not api_key:
            raise ValueError("OpenAITTS needs an API key")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self._client = client or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:
        return f"OpenAITTS(model={self.model!r}, voice={self.voice!r}, base_url={self.base_url!r})"

    def synthesize(self, text: str, language: str) -> bytes:
        import httpx

        text = (text or "").strip()
        if not text:
            return b""
        body = {"model": self.model, "input": text, "voice": self.voice, "response_format": "pcm"}
        if self.instructions:
            body["instructions"] = self.instructions
        try:
            response = self._client.post(
                f"{self.base_url}/audio/speech", json=body, headers={"Authorization": f"Bearer {self._api_key}"}
            )
        except httpx.HTTPError as exc:
            raise SpeechEngineError(f"speech request failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise _remote_error("speech synthesis", response)
        pcm = response.content
        return pcm[: len(pcm) - (len(pcm) % 2)]

    def close(self) -> None:
        self._client.close()
