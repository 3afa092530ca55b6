"""Benchmark: what the Realtime path adds between the kiosk and the upstream service.

One process, one event loop: the local emulator (scripted brain, server VAD) and, turn after turn, the same kiosk
audio through two paths:

* relay: RealtimeAudioProcessor.feed_audio → RealtimeClient → emulator; emulator deltas → processor → kiosk output;
* direct (baseline): RealtimeClient.append_audio → emulator; deltas → a client handler.

Per audio frame, kiosk → emulator input buffer (timed when the emulator has read the frame) and emulator delta →
kiosk (timed from when the emulator sent it; also for each turn's first delta alone, the dashboard's "our server"
plus the loopback socket), and per turn end of speech → first audio at the kiosk (the VAD's
silence included, in both paths). Prints p50/p95/p99 of each and the relay/direct ratios, then what the dashboard
reads for the relay's turns: the TurnMetric rows the session manager's callback wrote during the run, through
`metrics.stats.turn_stats` (nearest-rank p50/p95 of TTFA, upstream and "our server").

    python benchmarks/realtime_relay.py [--turns 20] [--frame-interval 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers

_scratch = tempfile.mkdtemp(prefix="realtime-relay-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
os.environ["DATABASE_URL"] = f"sqlite:///{_scratch}/reception.db"
os.environ["WORKFLOW_CHECKPOINT_PATH"] = f"{_scratch}/checkpoints.db"
os.environ["SPEECH_WARM_UP"] = "false"
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from metrics.collector import collector  # noqa: E402
from metrics.stats import turn_stats  # noqa: E402
from realtime.client import RealtimeClient  # noqa: E402
from realtime.emulator import EmulatorConfig, EmulatorServer, Say, ScriptedBrain  # noqa: E402
from realtime.emulator.audio import silence, tone  # noqa: E402
from realtime.processor import RealtimeAudioProcessor  # noqa: E402
from tests.support.realtime import TEST_KEY  # noqa: E402
from voice.hybrid import HybridVoiceManager  # noqa: E402

FRAME = 960  # 20 ms of PCM16 24 kHz
SPEECH = tone(600)
TURN = silence(200) + SPEECH + silence(800)
SPEECH_END = 200 * 48 + len(SPEECH)  # byte offset of the end of speech in TURN


class Timed(list):
    """A list that also records when each item was appended (the emulator's `received` / `sent`)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.perf_counter())
        super().append(item)

    def of(self, kind: str, since: int) -> list[float]:
        return [t for t, event in zip(self.times[since:], self[since:], strict=True) if event["type"] == kind]


class Kiosk:
    """KioskOutput that timestamps audio."""

    def __init__(self) -> None:
        self.audio_times: list[float] = []

    async def send_message(self, message: dict) -> None:
        pass

    async def send_audio(self, pcm16: bytes) -> None:
        self.audio_times.append(time.perf_counter())


class Figures:
    def __init__(self) -> None:
        self.uplink: list[float] = []
        self.downlink: list[float] = []
        self.first_delta: list[float] = []
        self.first_audio: list[float] = []


async def turn(
    server: EmulatorServer,
    feed: Any,
    audio_times: list[float],
    figures: Figures,
    frame_interval: float,
) -> None:
    """One spoken turn: frames paced at `frame_interval`, until the reply's audio has all arrived."""
    received, sent = server.received, server.sent
    received_from, sent_from, audio_from = len(received), len(sent), len(audio_times)
    fed: list[float] = []
    speech_end = 0.0
    for offset in range(0, len(TURN), FRAME):
        fed.append(time.perf_counter())
        await feed(TURN[offset : offset + FRAME])
        if offset + FRAME == SPEECH_END:
            speech_end = time.perf_counter()
        await asyncio.sleep(frame_interval)
    await until(
        lambda: (
            bool(sent.of("response.done", sent_from))
            and len(received.of("input_audio_buffer.append", received_from)) == len(fed)
        )
    )
    await asyncio.sleep(0.05)
    arrived = received.of("input_audio_buffer.append", received_from)
    figures.uplink += [a - f for f, a in zip(fed, arrived, strict=True)]
    deltas = sent.of("response.output_audio.delta", sent_from)
    heard = audio_times[audio_from:]
    figures.downlink += [h - d for d, h in zip(deltas, heard, strict=True)]
    figures.first_delta.append(heard[0] - deltas[0])
    figures.first_audio.append(heard[0] - speech_end)


async def relay_path(server: EmulatorServer, turns: int, frame_interval: float) -> Figures:
    kiosk, figures = Kiosk(), Figures()
    processor = RealtimeAudioProcessor(
        "bench-relay",
        "ja",
        kiosk,
        speak=True,
        client_factory=lambda **options: RealtimeClient(api_key=TEST_KEY, base_url=server.base_url, **options),
        # The session manager's own callback writes the TurnMetric rows the dashboard reads.
        on_response=HybridVoiceManager("bench-relay", "ja", kiosk)._realtime_response,
    )
    await processor.open(None)
    await until(lambda: bool(kiosk.audio_times) and not processor._client.response_active)
    for _ in range(turns):
        playback = processor.replies.playback  # let the kiosk finish playing, or the next turn is a barge-in
        if playback is not None:
            await asyncio.sleep(max(0.0, playback.ends_at() - time.monotonic()))
        await turn(server, processor.feed_audio, kiosk.audio_times, figures, frame_interval)
    await processor.close()
    return figures


async def direct_path(server: EmulatorServer, turns: int, frame_interval: float) -> Figures:
    audio_times: list[float] = []
    figures = Figures()
    client = RealtimeClient(api_key=TEST_KEY, base_url=server.base_url)

    async def read_events() -> None:
        async for event in client.events():
            if event["type"] == "response.output_audio.delta":
                audio_times.append(time.perf_counter())

    await client.connect()
    pump = asyncio.create_task(read_events())
    for _ in range(turns):
        await turn(server, client.append_audio, audio_times, figures, frame_interval)
    await client.close()
    await pump
    return figures


async def until(condition: Any, within: float = 10.0) -> None:
    """Poll `condition` (emulator and processor state are plain attributes, with no event to wait on)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000


async def main(turns: int, frame_interval: float) -> None:
    server = EmulatorServer(
        ScriptedBrain(default=Say("承知しました。")), config=EmulatorConfig(accepted_keys=frozenset({TEST_KEY}))
    )
    await server.start()
    server.received, server.sent = Timed(), Timed()
    try:
        direct = await direct_path(server, turns, frame_interval)
        relay = await relay_path(server, turns, frame_interval)
    finally:
        await server.stop()
    print(f"{turns} turns, {len(relay.uplink)} frames and {len(relay.downlink)} deltas per path (ms)")
    print(f"{'':28} {'relay p50/p95/p99':>24} {'direct p50/p95/p99':>24} {'ratio p50':>10}")
    for label, name in (
        ("kiosk frame -> input buffer", "uplink"),
        ("delta -> kiosk", "downlink"),
        ("turn's 1st delta -> kiosk", "first_delta"),
        ("end of speech -> 1st audio", "first_audio"),
    ):
        ours, base = percentiles(getattr(relay, name)), percentiles(getattr(direct, name))
        print(
            f"{label:28} {'/'.join(f'{v:.3f}' for v in ours):>24} {'/'.join(f'{v:.3f}' for v in base):>24} "
            f"{ours[0] / base[0]:>9.2f}x"
        )


def print_dashboard(since: datetime) -> None:
    """What the dashboard reads for the turns recorded since `since` (all of them the relay's)."""
    collector.flush()
    dashboard = turn_stats(since, timezone.now())["realtime"]
    print(f"dashboard, Realtime turns recorded: {dashboard['turns']} (the greeting has no timing); p50/p95 ms:")
    for label, name in (("TTFA", "ttfa"), ("upstream", "upstream"), ("our server", "server")):
        print(f"  {label:12} {dashboard[f'{name}_p50_ms']:.3f} / {dashboard[f'{name}_p95_ms']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--frame-interval", type=float, default=0.01, help="seconds between 20 ms frames")
    arguments = parser.parse_args()
    call_command("migrate", verbosity=0)
    started = timezone.now()
    asyncio.run(main(arguments.turns, arguments.frame_interval))
    print_dashboard(started)
