"""Figures for the Legacy speech stages (no assertions): run ``.venv/bin/python benchmarks/speech_stages.py``.

For a ~3 s utterance in ja and en: VAD RTF, STT time and RTF, TTS time to first sentence and
RTF, model load times, peak RSS; plus the cost of running Piper (GPL) out of process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from speech.audio import (  # noqa: E402
    KIOSK_SAMPLE_RATE,
    RECOGNITION_SAMPLE_RATE,
    float32_to_pcm16,
    pcm16_to_float32,
    resample_pcm16,
)

UTTERANCES = {
    "ja": "お名前と会社名を教えてください。",
    "en": "Please wait in the lobby, someone will come to meet you shortly.",
}
REPLIES = {
    "ja": "山田様、いらっしゃいませ。ただいま鈴木をお呼びしますので、ロビーでお待ちください。",
    "en": "Welcome, Mr. Yamada. I will call Mr. Suzuki now, please wait in the lobby.",
}


def rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    return vm_hwm_mb(os.getpid())


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median_time(fn, n: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def piper_in_process_probe() -> None:
    """Child process: the cost of importing/loading piper in-process."""
    from speech.tts import PiperTTS

    before = rss_mb()
    t = time.perf_counter()
    tts = PiperTTS(in_process=True)
    tts.load()
    load = time.perf_counter() - t
    tts.synthesize("Yes.", "en")
    per_call, _ = median_time(lambda: tts.synthesize("Thank you for waiting.", "en"), 5)
    print(json.dumps({"load_s": load, "short_sentence_s": per_call, "rss_before_mb": before, "rss_after_mb": rss_mb()}))


def load_engines():
    """Load the local engines and print what each load cost."""
    from speech.engines import get_speech_engines

    t0 = time.perf_counter()
    engines = get_speech_engines("local")
    loads = engines.warm_up()
    print(f"\n== model load (warm_up total {time.perf_counter() - t0:.2f} s, includes sha256 checks)")
    for k, v in loads.items():
        print(f"  {k:16s} {v:6.2f} s")
    stt, tts = engines.stt, engines.tts
    print(
        f"  whisper load alone {stt.load_seconds:.2f} s; piper worker: own load "
        f"{tts.english.worker_load_seconds:.2f} s, spawn+ready {tts.english.load_seconds:.2f} s"
    )
    print(f"  RSS after warm-up {rss_mb():.0f} MB (this process)")
    return engines


def vad_stage(engines, pcm24: bytes) -> None:
    """VAD over the utterance plus 1 s of silence, in 20 ms kiosk frames."""
    stream = pcm24 + bytes(2 * KIOSK_SAMPLE_RATE)
    frames = [stream[i : i + 960] for i in range(0, len(stream), 960)]

    def vad_run():
        seg = engines.new_segmenter()
        out = []
        for f in frames:
            out += seg.feed(f)
        return out

    t_vad, events = median_time(vad_run)
    stream_dur = len(stream) / 2 / KIOSK_SAMPLE_RATE
    print(
        f"  VAD (resample + Silero + segmenter): {t_vad * 1000:.0f} ms for {stream_dur:.2f} s, "
        f"RTF {t_vad / stream_dur:.3f}; events {[type(e).__name__ for e in events]}"
    )


def stt_stage(stt, pcm24: bytes, lang: str, duration: float) -> None:
    """Recognition time with the adaptive window and with Whisper's 30 s window."""
    pcm16 = resample_pcm16(pcm24, KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE)
    for label, window in (("adaptive window (default)", None), ("30 s window", 30)):
        saved = stt.min_chunk_length
        if window:
            stt.min_chunk_length = window
        t_stt, tr = median_time(lambda: stt.transcribe(pcm16, lang))
        stt.min_chunk_length = saved
        print(f"  STT {label}: {t_stt:.2f} s, RTF {t_stt / duration:.2f} -> {tr.text}")


def tts_stage(tts, lang: str) -> None:
    """Synthesis of a two-sentence reply: first sentence, all sentences, whole text at once."""
    from speech.tts import split_sentences

    sentences = split_sentences(REPLIES[lang], lang)
    t = time.perf_counter()
    first = tts.synthesize(sentences[0], lang)
    ttfs = time.perf_counter() - t
    rest = [tts.synthesize(s, lang) for s in sentences[1:]]
    total = time.perf_counter() - t
    audio = (len(first) + sum(len(r) for r in rest)) / 2 / KIOSK_SAMPLE_RATE
    t_whole, _ = median_time(lambda: tts.synthesize(REPLIES[lang], lang))
    print(
        f"  TTS reply ({len(sentences)} sentences, {audio:.2f} s audio): first sentence in "
        f"{ttfs * 1000:.0f} ms, all sentences {total:.2f} s (RTF {total / audio:.3f}); "
        f"whole text at once {t_whole:.2f} s"
    )


def piper_comparison(en) -> float:
    """Piper out of process (default) against in process (the GPL decision); returns the worker's RSS."""
    per_call, _ = median_time(lambda: en.synthesize("Thank you for waiting.", "en"), 5)
    worker_rss = vm_hwm_mb(en.worker_pid) if en.worker_pid else float("nan")
    probe = subprocess.run(
        [sys.executable, __file__, "--piper-in-process-probe"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    p = json.loads(probe.stdout.strip().splitlines()[-1])
    print("\n== piper: worker process (default) vs in-process")
    print(
        f"  worker : spawn+load {en.load_seconds:.2f} s, short sentence {per_call * 1000:.0f} ms, "
        f"worker peak RSS {worker_rss:.0f} MB"
    )
    print(
        f"  inproc : load {p['load_s']:.2f} s, short sentence {p['short_sentence_s'] * 1000:.0f} ms, "
        f"process RSS {p['rss_before_mb']:.0f} -> {p['rss_after_mb']:.0f} MB "
        f"(+{p['rss_after_mb'] - p['rss_before_mb']:.0f} MB)"
    )
    return worker_rss


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; RSS at start {rss_mb():.0f} MB")
    engines = load_engines()
    for lang in ("ja", "en"):
        print(f"\n== {lang}: utterance {UTTERANCES[lang]!r}")
        pcm24 = engines.tts.synthesize(UTTERANCES[lang], lang)
        duration = len(pcm24) / 2 / KIOSK_SAMPLE_RATE
        print(f"  audio {duration:.2f} s")
        vad_stage(engines, pcm24)
        stt_stage(engines.stt, pcm24, lang, duration)
        tts_stage(engines.tts, lang)
    worker_rss = piper_comparison(engines.tts.english)

    # a silent sanity figure: PCM helpers are not the bottleneck
    x = np.random.default_rng(0).standard_normal(KIOSK_SAMPLE_RATE * 60).astype(np.float32) * 0.1
    t = time.perf_counter()
    pcm16_to_float32(float32_to_pcm16(x))
    print(f"\npcm16 round trip of 60 s: {(time.perf_counter() - t) * 1000:.1f} ms")
    print(
        f"peak RSS: this process {rss_mb():.0f} MB; piper worker {worker_rss:.0f} MB; "
        f"sum {rss_mb() + worker_rss:.0f} MB"
    )
    engines.close()


if __name__ == "__main__":
    if "--piper-in-process-probe" in sys.argv:
        piper_in_process_probe()
    else:
        main()
