"""The corpus's visitor lines as a kiosk microphone hears them: spoken by the local voices (Open JTalk for ja, Piper
for en) at the line's speed, silent at its pauses, over deterministic pink noise at its level; PCM16 24 kHz in
20 ms frames. Speech is synthesised once per process."""

from __future__ import annotations

import functools

import numpy as np

from realtime.emulator.audio import silence
from speech.audio import KIOSK_SAMPLE_RATE
from speech.tts import OpenJTalkTTS, PiperTTS, TextToSpeech
from tests.support.corpus import NOISE_SNR_DB, PAUSE_MS, Line

FRAME_BYTES = 960  # 20 ms of PCM16 at 24 kHz
_NOISE_SECONDS = 20
_voices: dict[tuple[str, float], TextToSpeech] = {}


def _voice(language: str, speed: float) -> TextToSpeech:
    """The visitor's voice: Open JTalk's speed, Piper's length scale (its inverse)."""
    key = (language, speed)
    if key not in _voices:
        _voices[key] = OpenJTalkTTS(speed=speed) if language == "ja" else PiperTTS(length_scale=1 / speed)
    return _voices[key]


def close_voices() -> None:
    """Stop the visitor voices' worker processes (Piper); speech already made stays cached."""
    for voice in _voices.values():
        close = getattr(voice, "close", None)
        if close is not None:
            close()
    _voices.clear()


@functools.cache
def spoken(line: Line, language: str) -> bytes:
    """The line as speech, PCM16 24 kHz, with PAUSE_MS of silence at each "|"."""
    parts = [_voice(language, line.speed).synthesize(part.strip(), language) for part in line.text.split("|")]
    return silence(PAUSE_MS).join(parts)


@functools.cache
def _pink_noise(seed: int) -> np.ndarray:
    """Unit-RMS pink (1/f) noise, float32, looped by the microphone."""
    count = _NOISE_SECONDS * KIOSK_SAMPLE_RATE
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(count))
    frequencies = np.fft.rfftfreq(count, 1 / KIOSK_SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(frequencies[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, count)
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def _speech_rms(pcm16: bytes) -> float:
    """RMS level (0-1) of the voiced 20 ms frames of speech (pauses and edges left out)."""
    samples = np.frombuffer(pcm16, "<i2").astype(np.float32) / 32768
    frames = samples[: len(samples) // 480 * 480].reshape(-1, 480)
    levels = np.sqrt(np.mean(frames**2, axis=1))
    voiced = levels[levels > 0.01]
    return float(np.sqrt(np.mean(voiced**2))) if voiced.size else 0.0


class Microphone:
    """A kiosk microphone in a lobby: speech and silence in 20 ms frames, with the current line's background noise
    running on through the silences (the same noise every run: a fixed seed)."""

    def __init__(self, seed: int = 15) -> None:
        self._noise = _pink_noise(seed)
        self._position = 0
        self._level = 0.0

    def hear(self, line: Line, speech: bytes) -> None:
        """From now on the noise is the line's: its signal-to-noise ratio below this speech, or none."""
        snr = NOISE_SNR_DB[line.noise]
        self._level = 0.0 if snr is None else _speech_rms(speech) / 10 ** (snr / 20)

    def frames(self, pcm16: bytes) -> list[bytes]:
        """`pcm16` as 20 ms frames (the last one padded with silence) with the noise mixed in."""
        pcm16 += bytes(-len(pcm16) % FRAME_BYTES)
        samples = np.frombuffer(pcm16, "<i2").astype(np.float32) / 32768
        if self._level:
            at = (self._position + np.arange(samples.size)) % self._noise.size
            samples = samples + self._level * self._noise[at]
            self._position = int(at[-1] + 1) if samples.size else self._position
        mixed = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        return [mixed[i : i + FRAME_BYTES] for i in range(0, len(mixed), FRAME_BYTES)]

    def quiet(self) -> bytes:
        """One 20 ms frame of the room without speech."""
        return self.frames(bytes(FRAME_BYTES))[0]
