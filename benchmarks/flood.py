"""Benchmark: other kiosks' turn time while one kiosk floods the server, against the same run without a flood.

Starts a real daphne process on 127.0.0.1 (fresh SQLite, rule-based understanding, Legacy path). N calm
kiosks hold text conversations (`input_text` -> `response.done`, timed). In the flood phase one more kiosk
sends text and 100 ms audio frames as fast as its socket takes them, reconnecting whenever it is closed
(4429), for the same duration. Prints the calm kiosks' p50/p95 in both phases and the flooder's figures:
frames sent, frames refused (`rate_limited` answers), closes with 4429 and refused reconnects.

    python benchmarks/flood.py [--kiosks 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.live_server import LiveServer, throwaway_database

TURNS = ["Hi, I'm John Smith from Acme Corp.", "I'm here to see Mr. Tanaka about the contract.", "Yes"]
CANCEL = json.dumps({"type": "response.cancel"})
CHUNK = b"\x00\x00" * 2400  # 100 ms of silence


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def until_done(ws) -> None:
    while True:
        message = await ws.recv()
        if isinstance(message, str) and json.loads(message)["type"] in ("response.done", "error"):
            return


async def calm_kiosk(url: str, key: str, index: int, seconds: float, turns: list[float]) -> None:
    """One socket and one visit for the phase (a real kiosk does not reconnect per turn): turns in a loop."""
    deadline = time.monotonic() + seconds
    async with websockets.connect(url, additional_headers=headers(key)) as ws:
        await ws.send(json.dumps({"type": "session.start", "language": "en"}))
        await until_done(ws)
        for text in itertools.cycle(TURNS):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)  # the visitor reads, then answers
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "input_text", "text": text}))
            await until_done(ws)
            turns.append(time.perf_counter() - started)


async def flooder(url: str, key: str, seconds: float, tally: Counter) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url, additional_headers=headers(key)) as ws:
                await ws.send(json.dumps({"type": "session.start", "language": "en"}))

                async def read() -> None:
                    try:
                        async for message in ws:
                            if isinstance(message, str) and json.loads(message).get("code") == "rate_limited":
                                tally["refused"] += 1
                    except websockets.ConnectionClosed:
                        pass

                reader = asyncio.create_task(read())
                try:
                    while time.monotonic() < deadline:
                        await ws.send(CANCEL)
                        await ws.send(CHUNK)
                        tally["sent"] += 2
                finally:
                    await asyncio.wait({reader}, timeout=2)
                    reader.cancel()
        except websockets.ConnectionClosed as closed:
            tally[f"closed {closed.rcvd.code if closed.rcvd else 'abnormally'}"] += 1
            await asyncio.sleep(0.05)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=5, help="calm kiosks")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, throwaway_database("sqlite", Path(directory)) as url:
        server = LiveServer(url, Path(directory), {"SPEECH_WARM_UP": "false"})
        keys = [server.prepare()] + [server.create_kiosk() for _ in range(args.kiosks)]
        server.start()
        try:
            calm, flood_key = keys[: args.kiosks], keys[args.kiosks]
            await asyncio.gather(*(calm_kiosk(server.url, k, i, 1, []) for i, k in enumerate(calm)))  # warm-up
            quiet: list[float] = []
            await asyncio.gather(*(calm_kiosk(server.url, k, i, args.seconds, quiet) for i, k in enumerate(calm)))
            flooded: list[float] = []
            tally: Counter = Counter()
            await asyncio.gather(
                flooder(server.url, flood_key, args.seconds, tally),
                *(calm_kiosk(server.url, k, i, args.seconds, flooded) for i, k in enumerate(calm)),
            )
        finally:
            server.stop()
    print(f"calm kiosks={args.kiosks} phase={args.seconds:.0f}s")
    for name, turns in (("without flood", quiet), ("during flood ", flooded)):
        print(
            f"{name} turns={len(turns):4d} p50={percentile(turns, 0.5):6.1f} ms p95={percentile(turns, 0.95):6.1f} ms"
        )
    closes = {k: v for k, v in tally.items() if k.startswith("closed")}
    print(f"flooder: frames sent={tally['sent']} refused={tally['refused']} closes={closes}")


if __name__ == "__main__":
    asyncio.run(main())
