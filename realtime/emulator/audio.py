"""PCM16 24 kHz helpers for the emulator: durations, loudness and deterministic synthetic speech."""

from __future__ import annotations

import math
import struct

import numpy as np

SAMPLE_RATE = 24_000
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # 48: mono 16-bit little-endian


def duration_ms(pcm16: bytes) -> int:
    """Whole milliseconds of audio in a PCM16 24 kHz buffer."""
    return len(pcm16) // BYTES_PER_MS


def rms(pcm16: bytes) -> float:
    """Root mean square level of a PCM16 buffer, 0.0 (silence) to 1.0 (full scale).

    The server VAD measures every 20 ms frame of every session: numpy, not a Python loop over the samples.
    """
    samples = np.frombuffer(pcm16, dtype="<i2", count=len(pcm16) // 2).astype(np.float64)
    if not samples.size:
        return 0.0
    return float(np.sqrt(np.dot(samples, samples) / samples.size)) / 32768.0


def tone(ms: int, frequency: float = 440.0, amplitude: float = 0.3) -> bytes:
    """A sine tone of `ms` milliseconds as PCM16 24 kHz."""
    count = SAMPLE_RATE * ms // 1000
    peak = int(32767 * amplitude)
    step = 2 * math.pi * frequency / SAMPLE_RATE
    return struct.pack(f"<{count}h", *(int(peak * math.sin(step * i)) for i in range(count)))


def silence(ms: int) -> bytes:
    """`ms` milliseconds of digital silence as PCM16 24 kHz."""
    return bytes(BYTES_PER_MS * ms)


def speech_for_text(text: str) -> bytes:
    """Deterministic stand-in for synthesised speech: 60 ms of tone per character, at least 200 ms.

    The pitch depends on the text, so two different sentences give different audio.
    """
    frequency = 300.0 + sum(map(ord, text)) % 300
    return tone(max(200, 60 * len(text)), frequency, amplitude=0.2)
