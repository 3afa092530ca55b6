"""PCM16 little-endian mono helpers and soxr resampling (never ``np.interp``: it aliases)."""

from __future__ import annotations

import numpy as np
import soxr

KIOSK_SAMPLE_RATE = 24000
"""Wire format between kiosk and server: PCM16 LE mono at 24 kHz (also OpenAI's ``pcm``)."""

RECOGNITION_SAMPLE_RATE = 16000
"""What Silero VAD and Whisper take."""

_INT16_SCALE = 32768.0


def pcm16_to_float32(pcm: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """PCM16 LE bytes (or an int16 array) -> float32 in [-1, 1). Float input passes through."""
    if isinstance(pcm, np.ndarray):
        if pcm.dtype == np.int16:
            return pcm.astype(np.float32) / _INT16_SCALE
        if pcm.dtype.kind == "f":
            return np.ascontiguousarray(pcm, dtype=np.float32).reshape(-1)
        raise TypeError(f"unsupported sample dtype {pcm.dtype}; use int16 or float")
    buf = bytes(pcm)
    if len(buf) % 2:
        raise ValueError("PCM16 data must have an even number of bytes")
    return np.frombuffer(buf, dtype="<i2").astype(np.float32) / _INT16_SCALE


def float32_to_pcm16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> PCM16 LE bytes (clipped, rounded)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    x = np.clip(np.rint(x * _INT16_SCALE), -32768, 32767)
    return x.astype("<i2").tobytes()


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: str = "HQ") -> np.ndarray:
    """One-shot resampling of float32 mono audio with soxr."""
    x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    if in_rate == out_rate or x.size == 0:
        return x.copy()
    return soxr.resample(x, in_rate, out_rate, quality=quality).astype(np.float32, copy=False)


def resample_pcm16(pcm16: bytes, in_rate: int, out_rate: int) -> bytes:
    """One-shot resampling of PCM16 LE bytes."""
    if in_rate == out_rate:
        return bytes(pcm16)
    return float32_to_pcm16(resample(pcm16_to_float32(pcm16), in_rate, out_rate))


class Resampler:
    """Streaming soxr resampler (``ResampleStream``, HQ) for chunks of any length.

    One instance per audio stream (it keeps filter state). Output length over the whole
    stream matches ``round(n_in * out_rate / in_rate)`` once ``flush()`` has been called.
    Not thread-safe: one stream, one owner.
    """

    def __init__(
        self, in_rate: int = KIOSK_SAMPLE_RATE, out_rate: int = RECOGNITION_SAMPLE_RATE, quality: str = "HQ"
    ) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.in_rate == self.out_rate:
            return None
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=self.quality)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed float32 samples, get whatever output is ready (may be empty)."""
        x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if self._stream is None:
            return x.copy()
        return self._stream.resample_chunk(x, last=False)

    def process_pcm16(self, pcm16: bytes | bytearray | memoryview) -> np.ndarray:
        return self.process(pcm16_to_float32(pcm16))

    def flush(self) -> np.ndarray:
        """End of stream: return the samples still held in the filter, then reset."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self.reset()
        return out

    def reset(self) -> None:
        self._stream = self._new_stream()
