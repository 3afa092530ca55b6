"""Benchmark: `input_text` → `response.done` through the kiosk socket, many kiosks talking at once.

Starts a real daphne process on 127.0.0.1 over a fresh SQLite (or PostgreSQL) database and the
rule-based language understanding, then runs N kiosks concurrently through whole conversations,
each visitor pausing `--think` seconds (± 50 %) before answering; `--think 0` saturates the server.
Baseline in the same run: the round trip of a frame the server rejects without touching the
workflow (protocol + socket cost only). Prints p50/p95 of both and their ratio.

    python benchmarks/text_turn.py [--kiosks 20] [--rounds 3] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.live_server import LiveServer, throwaway_database

CONVERSATIONS = {
    "ja": ["株式会社テストの山田太郎です。", "鈴木さんと10時にお約束があります。", "はい"],
    "en": ["Hi, I'm John Smith from Acme Corp.", "I'm here to see Mr. Tanaka about the contract.", "Yes"],
}


async def until_done(ws) -> None:
    while True:
        message = json.loads(await ws.recv())
        if message["type"] in ("response.done", "error"):
            return


async def kiosk(
    server: LiveServer, key: str, index: int, rounds: int, turns: list[float], baseline: list[float], think: float
):
    language = "ja" if index % 2 == 0 else "en"
    async with websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        for round_number in range(rounds):
            await ws.send(
                json.dumps(
                    {"type": "session.start", "session_id": f"bench-{index}-{round_number}", "language": language}
                )
            )
            await until_done(ws)
            for text in CONVERSATIONS[language]:
                await asyncio.sleep(think * random.uniform(0.5, 1.5))  # the visitor reads, then answers
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "input_text", "text": text}, ensure_ascii=False))
                await until_done(ws)
                turns.append(time.perf_counter() - started)
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "no.such.type"}))
                await until_done(ws)
                baseline.append(time.perf_counter() - started)
            await ws.send(json.dumps({"type": "session.end"}))
            await ws.recv()
            await ws.wait_closed()
            ws = await websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {key}"})
        await ws.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="conversations per kiosk")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean seconds a visitor takes between turns (0: saturate the server)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, throwaway_database(args.database, Path(directory)) as url:
        # The text path alone: the speech models do not load in the background meanwhile.
        server = LiveServer(url, Path(directory), {"SPEECH_WARM_UP": "false"})
        keys = [server.prepare()] + [server.create_kiosk() for _ in range(args.kiosks - 1)]
        server.start()
        try:
            turns: list[float] = []
            baseline: list[float] = []
            # One conversation per kiosk first, not counted: the steady state is what visitors meet.
            await asyncio.gather(*(kiosk(server, keys[i], 1000 + i, 1, [], [], 0) for i in range(args.kiosks)))
            started = time.perf_counter()
            await asyncio.gather(
                *(kiosk(server, keys[i], i, args.rounds, turns, baseline, args.think) for i in range(args.kiosks))
            )
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
    ms = 1000
    print(
        f"kiosks={args.kiosks} rounds={args.rounds} think={args.think}s database={args.database} "
        f"turns={len(turns)} wall={elapsed:.1f}s"
    )
    print(
        f"text turn   p50={percentile(turns, 0.5) * ms:6.1f} ms  p95={percentile(turns, 0.95) * ms:6.1f} ms  "
        f"max={max(turns) * ms:6.1f} ms  mean={statistics.fmean(turns) * ms:6.1f} ms"
    )
    base50, base95 = percentile(baseline, 0.5), percentile(baseline, 0.95)
    print(f"baseline    p50={base50 * ms:6.1f} ms  p95={base95 * ms:6.1f} ms  (rejected frame round trip)")
    print(f"ratio p50={percentile(turns, 0.5) / base50:.1f}x  p95={percentile(turns, 0.95) / base95:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
