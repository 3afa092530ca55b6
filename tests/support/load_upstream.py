"""The load test's upstream stand-in: the bundled Realtime emulator with a brain that costs next to nothing.

It runs in its own process so that the server's figures are the server's. Replies are slices of one clip rendered
at start-up; what the visitor said and the function call a model would make come from a script, keyed by the
utterance number the load kiosks write into their audio frames; the function calls drive the real reception
workflow on the server. Every frame carries the kiosk's send time (see `stamp`), so the time the server adds
kiosk → upstream is measured here, and each reply delta carries the stand-in's send time for the other direction.

    python tests/support/load_upstream.py --port 8765 [--brain scripted|reception] [--pace 0.25]

`GET /stats` on the same port (plain HTTP): the kiosk → upstream samples so far, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

FRAME_BYTES = 960  # 20 ms of PCM16 24 kHz, as the kiosk page sends it
STAMP_BYTES = 12  # six samples carrying 8 bits each of the send time (µs of the monotonic clock): inaudible
_MASK = (1 << 48) - 1
_STAMP = struct.Struct("<6h")
STATS_PATH = "/stats"

# The visitor's lines, in order, with the call a model would make for each (the workflow answers them).
SCRIPT: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "株式会社テストの山田太郎です。",
        "collect_visitor_info",
        {"company_name": "株式会社テスト", "visitor_name": "山田太郎"},
    ),
    ("鈴木さんと10時にお約束があります。", "collect_visitor_info", {"host_name": "鈴木", "purpose": "10時のお約束"}),
    ("はい", "confirm_visitor_info", {"confirmed": True}),
)
CALLS = {text: (name, arguments) for text, name, arguments in SCRIPT}


def now_us() -> int:
    return (time.monotonic_ns() // 1000) & _MASK


def stamp(pcm16: bytes, utterance: int = 0) -> bytes:
    """`pcm16` (one frame) with the current time in its first six samples and `utterance` (1-based, 0: none) in
    the seventh, each below 1/128 of full scale so that neither a VAD nor a listener notices."""
    now = now_us()
    head = _STAMP.pack(*((now >> (8 * i)) & 0xFF for i in range(6))) + struct.pack("<h", utterance)
    return head + pcm16[len(head) :]


def stamp_age_ms(pcm16: bytes) -> float:
    """Milliseconds since `stamp` wrote the frame's time (same machine, same clock)."""
    parts = _STAMP.unpack_from(pcm16)
    sent = sum((value & 0xFF) << (8 * i) for i, value in enumerate(parts))
    return ((now_us() - sent) & _MASK) / 1000


def utterance_of(pcm16: bytes) -> int:
    """The most frequent non-zero utterance number among the frames of `pcm16` (0 when none)."""
    counts: dict[int, int] = {}
    for offset in range(0, len(pcm16) - FRAME_BYTES + 1, FRAME_BYTES):
        number = struct.unpack_from("<h", pcm16, offset + STAMP_BYTES)[0]
        if number > 0:
            counts[number] = counts.get(number, 0) + 1
    return max(counts, key=counts.get) if counts else 0


def percentiles(samples: Any) -> dict[str, float | int]:
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    pick = lambda fraction: round(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))], 2)  # noqa: E731
    return {"count": len(ordered), "p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99)}


def build_standin(port: int, brain_kind: str, pace: float):
    """The emulator server (Django is set up first: the reception brain and the say-exactly marker need it)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
    django.setup()
    from realtime.emulator import EmulatorConfig
    from realtime.emulator.reception_brain import build_reception_brain
    from tests.support.load_standin import DiscardLog, ScriptBrain, StandIn

    server = StandIn(
        ScriptBrain() if brain_kind == "scripted" else build_reception_brain(),
        host="127.0.0.1",
        port=port,
        config=EmulatorConfig(pace=pace),
    )
    server.received = server.sent = DiscardLog()
    return server


async def serve(port: int, brain_kind: str, pace: float) -> None:
    server = build_standin(port, brain_kind, pace)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with server:
        print(f"stand-in listening on {server.url}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--brain", choices=("scripted", "reception"), default="scripted")
    parser.add_argument("--pace", type=float, default=0.25, help="wall seconds per second of reply audio")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.brain, args.pace))  # the cheapest loop: the stand-in shares the cores


if __name__ == "__main__":
    main()
