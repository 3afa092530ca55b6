"""Load test: many kiosks holding whole reception conversations at once, on 127.0.0.1 only.

Starts the Realtime emulator and a real daphne server over a fresh database, switches Realtime on
for every session, then keeps `--sessions` kiosks in conversation for `--duration` seconds (each
conversation: start, name and company, host, confirmation, end). Prints turns, latencies
(p50/p95/p99 of input_text → response.done), errors, fallbacks and lost turns. Stops by itself.

    python tests/load_test_realtime.py --sessions 50 --duration 300 [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.live_server import LiveServer, free_port, throwaway_database, wait_for_port

TURNS = ["株式会社テストの山田太郎です。", "鈴木さんと10時にお約束があります。", "はい"]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    conversations: int = 0
    errors: list[str] = field(default_factory=list)
    fallbacks: Counter = field(default_factory=Counter)
    turns_sent: int = 0


async def until_done(ws, tally: Tally) -> None:
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=30)
        if isinstance(message, bytes):
            continue
        message = json.loads(message)
        if message["type"] == "mode.changed":
            tally.fallbacks[message["reason"]] += 1
        if message["type"] == "error":
            tally.errors.append(message["code"])
            return
        if message["type"] == "response.done":
            return


async def kiosk(url: str, key: str, number: int, deadline: float, tally: Tally) -> None:
    conversation = 0
    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
                await ws.send(json.dumps({"type": "session.start", "session_id": f"load-{number}-{conversation}"}))
                await until_done(ws, tally)
                for text in TURNS:
                    tally.turns_sent += 1
                    started = time.perf_counter()
                    await ws.send(json.dumps({"type": "input_text", "text": text}, ensure_ascii=False))
                    await until_done(ws, tally)
                    tally.latencies.append(time.perf_counter() - started)
                await ws.send(json.dumps({"type": "session.end"}))
                while True:
                    message = await asyncio.wait_for(ws.recv(), timeout=30)
                    if isinstance(message, str) and json.loads(message)["type"] == "session.ended":
                        break
            tally.conversations += 1
        except (TimeoutError, OSError, websockets.WebSocketException) as error:
            tally.errors.append(type(error).__name__)
        conversation += 1


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


async def run(sessions: int, duration: float, database: str) -> Tally:
    tally = Tally()
    with tempfile.TemporaryDirectory() as directory, throwaway_database(database, Path(directory)) as url:
        emulator_port = free_port()
        # Every session uses one kiosk key and reconnects per conversation, faster than any lobby kiosk:
        # the kiosk connection limits (benchmarks/flood.py measures them) are lifted for the load run.
        env = {
            "REALTIME_API_URL": f"ws://127.0.0.1:{emulator_port}/v1/realtime",
            "KIOSK_MAX_CONNECTIONS_PER_KIOSK": str(sessions),
            "KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE": "1000000",
            "KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE": "1000000",
        }
        server = LiveServer(url, Path(directory), env)
        key = server.prepare()
        server.manage("rollout", "--enable", "--reason", "load test")
        server.manage("rollout", "--percent", "100", "--reason", "load test")
        # The emulator runs as `make run` runs it: its own process, the server's database, local speech.
        emulator = server.spawn("realtime_emulator", "--port", str(emulator_port), "--brain", "reception")
        server.start()
        try:
            wait_for_port(emulator_port)
            deadline = time.monotonic() + duration
            await asyncio.gather(*(kiosk(server.url, key, n, deadline, tally) for n in range(sessions)))
        finally:
            server.stop()
            emulator.terminate()
            emulator.wait(timeout=10)
    return tally


def report(tally: Tally, sessions: int, duration: float) -> str:
    ms = [latency * 1000 for latency in tally.latencies]
    lost = tally.turns_sent - len(tally.latencies)
    return "\n".join(
        [
            f"sessions={sessions} duration={duration:.0f}s conversations={tally.conversations} turns={len(ms)}",
            f"turn latency p50={percentile(ms, 0.5):.1f} ms p95={percentile(ms, 0.95):.1f} ms "
            f"p99={percentile(ms, 0.99):.1f} ms mean={statistics.fmean(ms) if ms else float('nan'):.1f} ms",
            f"errors={len(tally.errors)} fallbacks={sum(tally.fallbacks.values())} lost_turns={lost}"
            + (f" (fallbacks by reason: {dict(tally.fallbacks)})" if tally.fallbacks else ""),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args(argv)
    tally = asyncio.run(run(args.sessions, args.duration, args.database))
    print(report(tally, args.sessions, args.duration))
    return 1 if tally.errors or tally.conversations == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
