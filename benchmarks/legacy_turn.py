"""Benchmark: Legacy voice turn, end of speech → first audio byte at the kiosk.

A real server process on 127.0.0.1 (local engines, warmed up) and one `websockets` kiosk that
streams a ~3 s spoken utterance in real time (20 ms frames), then silence, and times the gap
between its last speech frame and the first binary audio frame of the answer. Each turn is a
new session, so every turn asks the same question of the workflow.

Baseline in the same run, in this process: the stages alone on the same audio (speech-to-text,
then text-to-speech of the first reply sentence), plus the configured end-of-speech silence.
The ratio shows what the socket, the workflow and the scheduling add on top.

    python benchmarks/legacy_turn.py [--turns 20] [--language ja|en] [--without-speculation]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
import django

django.setup()

from django.conf import settings  # noqa: E402

from speech.audio import KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE, resample_pcm16  # noqa: E402
from speech.engines import get_speech_engines  # noqa: E402
from speech.tts import split_sentences  # noqa: E402
from speech.vad import UtteranceSegmenter  # noqa: E402
from tests.support.live_server import LiveServer, throwaway_database  # noqa: E402

FRAME_BYTES = 960  # 20 ms
UTTERANCES = {
    "ja": "株式会社テストの山田太郎と申します。",
    "en": "Hello, my name is John Smith from Acme Corporation.",
}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def one_turn(server: LiveServer, key: str, speech: bytes, language: str, index: int) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(server.url, additional_headers=headers, max_size=None) as ws:
        await ws.send(
            json.dumps({"type": "session.start", "session_id": f"legacy-bench-{index}", "language": language})
        )
        while json.loads(await ws.recv())["type"] != "response.done":
            pass
        first_audio = asyncio.get_running_loop().create_future()

        async def listen() -> None:
            async for message in ws:
                if isinstance(message, bytes) and not first_audio.done():
                    first_audio.set_result(time.perf_counter())

        listener = asyncio.create_task(listen())
        started = time.perf_counter()
        frames = [speech[i : i + FRAME_BYTES] for i in range(0, len(speech), FRAME_BYTES)]
        for number, frame in enumerate(frames):  # real-time pacing, as a microphone would
            await asyncio.sleep(max(0.0, started + number * 0.02 - time.perf_counter()))
            await ws.send(frame)
        end_of_speech = time.perf_counter()
        silence, number = bytes(FRAME_BYTES), 0
        while not first_audio.done() and number < 500:  # at most 10 s of silence
            await asyncio.sleep(max(0.0, end_of_speech + number * 0.02 - time.perf_counter()))
            await ws.send(silence)
            number += 1
        latency = (await asyncio.wait_for(first_audio, 10)) - end_of_speech
        listener.cancel()
        return latency


def stage_baseline(speech: bytes, language: str) -> dict[str, float]:
    """Each stage alone on the same audio, in this process: seconds and real-time factors."""
    engines = get_speech_engines("local", whisper_dir=settings.WHISPER_MODEL_DIR)
    engines.warm_up()
    duration = len(speech) / 2 / KIOSK_SAMPLE_RATE
    segmenter: UtteranceSegmenter = engines.new_segmenter(silence_ms=settings.LEGACY_END_OF_SPEECH_SILENCE_MS)
    padded = speech + bytes(KIOSK_SAMPLE_RATE * 2)
    started = time.perf_counter()
    for offset in range(0, len(padded), FRAME_BYTES):
        segmenter.feed(padded[offset : offset + FRAME_BYTES])
    vad = time.perf_counter() - started
    pcm16k = resample_pcm16(speech, KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE)
    stt_times, tts_times = [], []
    reply = "株式会社テストの山田様ですね。" if language == "ja" else "Thank you, Mr. Smith."
    for _ in range(3):
        started = time.perf_counter()
        engines.stt.transcribe(pcm16k, language)
        stt_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        audio = engines.tts.synthesize(split_sentences(reply, language)[0], language)
        tts_times.append(time.perf_counter() - started)
    tts_audio = len(audio) / 2 / KIOSK_SAMPLE_RATE
    return {
        "duration": duration,
        "vad_rtf": vad / (len(padded) / 2 / KIOSK_SAMPLE_RATE),
        "stt": statistics.median(stt_times),
        "stt_rtf": statistics.median(stt_times) / duration,
        "tts": statistics.median(tts_times),
        "tts_rtf": statistics.median(tts_times) / tts_audio,
    }


async def server_turns(speech: bytes, language: str, turns: int, env: dict[str, str]) -> list[float]:
    """End of speech → first audio of `turns` turns against a fresh server with `env`."""
    with tempfile.TemporaryDirectory() as directory, throwaway_database("sqlite", Path(directory)) as url:
        server = LiveServer(url, Path(directory), {"SPEECH_WARM_UP": "true", **env})
        key = server.prepare()
        server.start()
        try:
            await one_turn(server, key, speech, language, -1)  # warm-up turn, not counted
            return [await one_turn(server, key, speech, language, i) for i in range(turns)]
        finally:
            server.stop()


def describe(latencies: list[float]) -> str:
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    return f"p50={p50 * 1000:.0f} ms  p95={p95 * 1000:.0f} ms  max={max(latencies) * 1000:.0f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--language", choices=["ja", "en"], default="ja")
    parser.add_argument(
        "--without-speculation",
        action="store_true",
        help="also measure, in the same run, recognition that waits for the whole silence",
    )
    args = parser.parse_args()
    engines = get_speech_engines("local", whisper_dir=settings.WHISPER_MODEL_DIR)
    speech = engines.tts.synthesize(UTTERANCES[args.language], args.language)
    baseline = stage_baseline(speech, args.language)
    latencies = await server_turns(speech, args.language, args.turns, {})
    silence = settings.LEGACY_END_OF_SPEECH_SILENCE_MS / 1000
    floor = silence + baseline["stt"] + baseline["tts"]
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    print(f"utterance {baseline['duration']:.2f} s ({args.language}), turns={args.turns}")
    print(f"end of speech → first audio: {describe(latencies)}")
    print(
        f"stages alone: silence wait {silence * 1000:.0f} ms + STT {baseline['stt'] * 1000:.0f} ms "
        f"+ TTS first sentence {baseline['tts'] * 1000:.0f} ms = {floor * 1000:.0f} ms"
    )
    print(f"RTF: VAD {baseline['vad_rtf']:.3f}  STT {baseline['stt_rtf']:.3f}  TTS {baseline['tts_rtf']:.3f}")
    print(f"ratio to the stages alone: p50 {p50 / floor:.2f}x  p95 {p95 / floor:.2f}x")
    if args.without_speculation:  # a pause as long as the silence wait: recognition starts only after it
        waiting = str(settings.LEGACY_END_OF_SPEECH_SILENCE_MS)
        before = await server_turns(speech, args.language, args.turns, {"LEGACY_SPECULATIVE_SILENCE_MS": waiting})
        print(f"without speculative recognition: {describe(before)}")
        print(f"with / without: p50 {p50 / percentile(before, 0.5):.2f}x  p95 {p95 / percentile(before, 0.95):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
