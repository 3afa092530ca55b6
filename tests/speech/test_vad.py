"""Utterance segmentation (Silero VAD) on synthesized speech, silence and noise; resampling.

Tests marked ``speech`` synthesize their test audio with Open JTalk / Piper (a few seconds).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from speech.audio import (
    KIOSK_SAMPLE_RATE,
    RECOGNITION_SAMPLE_RATE,
    Resampler,
    float32_to_pcm16,
    pcm16_to_float32,
    resample,
)
from speech.vad import SileroVAD, SpeechStarted, Utterance, UtteranceSegmenter, pcm16_frames

SR = KIOSK_SAMPLE_RATE


@functools.cache
def speech(text: str, language: str) -> np.ndarray:
    """Synthesized speech, 24 kHz float32, trimmed to its audible part."""
    from speech.tts import OpenJTalkTTS, PiperTTS

    engine = OpenJTalkTTS() if language == "ja" else PiperTTS()
    try:
        x = pcm16_to_float32(engine.synthesize(text, language))
    finally:
        getattr(engine, "close", lambda: None)()
    lo, hi = active_span(x)
    return x[lo:hi]


def active_span(x: np.ndarray, frame: int = 480) -> tuple[int, int]:
    """First/last 20 ms frame whose RMS is within 40 dB of the loudest frame."""
    n = len(x) // frame
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    on = np.nonzero(rms > rms.max() * 10 ** (-40 / 20))[0]
    return int(on[0] * frame), int((on[-1] + 1) * frame)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def scene() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """1 s silence, ja, 1.5 s, en, 2 s, ja, 1 s: the signal and the true speech spans."""
    parts = [
        silence(1.0),
        speech("こんにちは、山田太郎です。", "ja"),
        silence(1.5),
        speech("I have an appointment with Mister Suzuki.", "en"),
        silence(2.0),
        speech("会議室は三階にございます。", "ja"),
        silence(1.0),
    ]
    spans, t = [], 0.0
    for i, p in enumerate(parts):
        if i % 2:
            spans.append((t, t + len(p) / SR))
        t += len(p) / SR
    return np.concatenate(parts), spans


def white_noise(n: int, rms: float, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * rms).astype(np.float32)


def add_noise_snr(x: np.ndarray, spans, snr_db: float) -> np.ndarray:
    speech_power = np.mean(np.concatenate([x[int(a * SR) : int(b * SR)] for a, b in spans]) ** 2)
    noise_rms = float(np.sqrt(speech_power / 10 ** (snr_db / 10)))
    return np.clip(x + white_noise(len(x), noise_rms), -1, 1)


def run(segmenter: UtteranceSegmenter, x: np.ndarray, frame_ms: int = 20):
    events = []
    for chunk in pcm16_frames(float32_to_pcm16(x), frame_ms=frame_ms):
        events += segmenter.feed(chunk)
    return events


def utterances(events) -> list[Utterance]:
    return [e for e in events if isinstance(e, Utterance)]


START_TOL = 0.25  # s; Silero onsets/offsets vs the energy-based truth
END_TOL = 0.35


def check_boundaries(found: list[Utterance], spans) -> None:
    assert len(found) == len(spans), [(u.start_s, u.end_s) for u in found]
    for u, (a, b) in zip(found, spans, strict=True):
        print(f"  true {a:5.2f}-{b:5.2f}  found {u.start_s:5.2f}-{u.end_s:5.2f}  ({u.reason})")
        assert abs(u.start_s - a) <= START_TOL
        assert abs(u.end_s - b) <= END_TOL
        assert u.reason == "silence"


@pytest.mark.speech
def test_clean_speech_three_utterances():
    x, spans = scene()
    seg = UtteranceSegmenter()
    events = run(seg, x)
    found = utterances(events)
    check_boundaries(found, spans)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == 3
    # pre-roll and post-roll: the clip starts before the onset and ends after the offset
    for u in found:
        assert u.duration >= (u.end_s - u.start_s) + 0.25
    assert seg.flush() is None


@pytest.mark.speech
def test_white_noise_10db_snr():
    x, spans = scene()
    noisy = add_noise_snr(x, spans, 10.0)
    found = utterances(run(UtteranceSegmenter(), noisy))
    check_boundaries(found, spans)


@pytest.mark.parametrize("kind", ["white", "rumble", "bursts"])
def test_noise_alone_is_no_utterance(kind):
    n = 6 * SR
    if kind == "white":
        x = white_noise(n, 0.05)  # about -26 dBFS, louder than the 10 dB SNR test's noise
    elif kind == "rumble":  # low-pass noise: air conditioning, traffic
        w = white_noise(n, 0.2, seed=2)
        x = np.zeros(n, np.float32)
        for i in range(1, n):
            x[i] = 0.9 * x[i - 1] + 0.1 * w[i]
        x *= 0.1 / (np.sqrt(np.mean(x**2)) + 1e-9)
    else:  # loud 150 ms noise bursts (a cough, a door) over quiet noise
        x = white_noise(n, 0.003)
        for start in (1.0, 2.5, 4.0):
            i = int(start * SR)
            x[i : i + int(0.15 * SR)] += white_noise(int(0.15 * SR), 0.3, seed=int(start * 10))
    seg = UtteranceSegmenter()
    events = run(seg, np.clip(x, -1, 1))
    assert events == []
    assert seg.flush() is None


@pytest.mark.speech
def test_any_chunk_size_gives_the_same_result():
    x, _spans = scene()
    pcm = float32_to_pcm16(x)
    rng = np.random.default_rng(7)
    seg = UtteranceSegmenter()
    events, i = [], 0
    while i < len(pcm):
        step = int(rng.integers(1, 2000)) * 2
        events += seg.feed(pcm[i : i + step])
        i += step
    reference = utterances(run(UtteranceSegmenter(), x))
    found = utterances(events)
    assert [(u.start_s, u.end_s) for u in found] == [(u.start_s, u.end_s) for u in reference]


@pytest.mark.speech
def test_flush_commits_push_to_talk():
    x = np.concatenate([silence(0.5), speech("少々お待ちください。", "ja")])  # no trailing silence
    seg = UtteranceSegmenter()
    events = run(seg, x)
    assert [type(e) for e in events] == [SpeechStarted]
    u = seg.flush()
    assert u is not None and u.reason == "flush"
    assert abs(u.start_s - 0.5) <= START_TOL
    assert u.duration >= len(x) / SR - 0.5 - 0.05
    assert seg.flush() is None  # nothing left after a commit
    # a flush during silence or a short blip gives nothing
    seg2 = UtteranceSegmenter()
    run(seg2, silence(1.0))
    assert seg2.flush() is None


@pytest.mark.speech
def test_max_utterance_length_forces_a_cut():
    long_speech = np.concatenate([speech("会議室は三階にございます。", "ja")] * 3)
    x = np.concatenate([silence(0.5), long_speech, silence(1.0)])
    found = utterances(run(UtteranceSegmenter(max_utterance_ms=2000), x))
    assert len(found) >= 2
    assert found[0].reason == "max_length"
    assert all(u.duration <= 2.0 + 0.3 + 0.2 + 0.05 for u in found)


@pytest.mark.speech
def test_short_silence_does_not_split_but_long_does():
    a = speech("こんにちは。", "ja")
    b = speech("少々お待ちください。", "ja")
    x = np.concatenate([silence(0.5), a, silence(0.3), b, silence(1.0)])
    assert len(utterances(run(UtteranceSegmenter(silence_ms=600), x))) == 1
    assert len(utterances(run(UtteranceSegmenter(silence_ms=200), x))) == 2


def test_silero_frame_contract():
    vad = SileroVAD()
    assert vad.frame_samples == 512 and vad.sample_rate == RECOGNITION_SAMPLE_RATE
    assert vad.speech_probability(np.zeros(512, np.float32)) < 0.1
    with pytest.raises(ValueError):
        vad.speech_probability(np.zeros(100, np.float32))


class ScriptedDetector:
    """Stands in for pysilero's detector: scores from a script, and counts resets."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.resets = iter(scores), 0

    def process_samples(self, samples) -> float:
        return next(self.scores)

    def reset(self) -> None:
        self.resets += 1


@pytest.mark.parametrize(
    ("scores", "resets"),
    [
        ([0.9] * 3 + [0.05] * (SileroVAD.QUIET_FRAMES_BEFORE_RESET - 1), 0),
        ([0.9] * 3 + [0.05] * SileroVAD.QUIET_FRAMES_BEFORE_RESET, 1),
        ([0.05] * 20 + [0.2] + [0.05] * (SileroVAD.QUIET_FRAMES_BEFORE_RESET - 1), 0),  # a sound breaks the quiet
        ([0.05] * (2 * SileroVAD.QUIET_FRAMES_BEFORE_RESET), 2),
    ],
)
def test_silero_starts_afresh_after_each_second_of_quiet(scores, resets):
    vad = SileroVAD()
    vad._detector = detector = ScriptedDetector(scores)
    for _ in scores:
        vad.speech_probability(np.zeros(512, np.float32))
    assert detector.resets == resets


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - test) ** 2)))


@pytest.mark.speech
def test_resampler_round_trip_snr():
    x24 = np.concatenate([speech("お名前と会社名を教えてください。", "ja"), speech("Please wait in the lobby.", "en")])
    x16 = resample(x24, SR, RECOGNITION_SAMPLE_RATE)  # band-limited to 8 kHz
    up, down = Resampler(RECOGNITION_SAMPLE_RATE, SR), Resampler(SR, RECOGNITION_SAMPLE_RATE)
    step = 320  # 20 ms at 16 kHz
    y24 = np.concatenate([up.process(x16[i : i + step]) for i in range(0, len(x16), step)] + [up.flush()])
    assert len(y24) == round(len(x16) * SR / RECOGNITION_SAMPLE_RATE)
    step = 480
    y16 = np.concatenate([down.process(y24[i : i + step]) for i in range(0, len(y24), step)] + [down.flush()])
    assert len(y16) == len(x16)
    edge = 1000
    snr = snr_db(x16[edge:-edge], y16[edge:-edge])
    one_shot = snr_db(x16[edge:-edge], resample(resample(x16, 16000, SR), SR, 16000)[edge:-edge])
    print(f"\nresampler round trip 16k->24k->16k: streaming {snr:.1f} dB, one-shot {one_shot:.1f} dB")
    assert snr > 40 and one_shot > 40


def test_pcm16_helpers_round_trip():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 0.99997], dtype=np.float32)
    pcm = float32_to_pcm16(x)
    assert len(pcm) == 10
    assert np.allclose(pcm16_to_float32(pcm), x, atol=1 / 32768)
    assert float32_to_pcm16(np.array([2.0, -2.0], np.float32)) == b"\xff\x7f\x00\x80"
    with pytest.raises(ValueError):
        pcm16_to_float32(b"\x00")
