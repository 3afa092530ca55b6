"""Benchmark: other kiosks' turn time while one kiosk floods the server, against a control and no flood.

Starts a real server process on 127.0.0.1 (fresh SQLite, rule-based understanding, Legacy path). N calm
kiosks hold text conversations (`input_text` -> `response.done`, timed), one socket each per phase. The
flooder runs in its own OS process (so its sending does not starve the calm kiosks' event loop) and sends
text and 100 ms audio frames as fast as its socket takes them, reconnecting whenever it is closed (4429).
Three phases of the same length, in one run:

- no flood: the calm kiosks alone (the baseline);
- flood a sink: the same flooder floods a trivial WebSocket server in another process that discards every
  frame, so the calm kiosks see the CPU contention of the flooding client and of receiving its frames,
  without our server handling them (the control);
- flood our server: the flooder floods the kiosk socket with a kiosk key of its own.

Prints the calm kiosks' p50/p95 per phase and their ratio to the baseline, the CPU seconds each process
used per phase, and the flooder's figures: frames sent, frames refused (`rate_limited` answers), closes
by code, connections refused at the handshake (after a 4429 the kiosk is locked out for
`KIOSK_RATE_FLOOD_WINDOW_SECONDS`, 10 s), and how long its sockets were open. A phase longer than the flood
window shows the steady state: one flooding socket per window.

    python benchmarks/flood.py [--kiosks 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers
from tests.support.live_server import LiveServer, free_port, throwaway_database, wait_for_port
from tests.support.processes import cpu_seconds

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


async def calm_kiosk(url: str, key: str, seconds: float, turns: list[float]) -> None:
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
        opened = time.monotonic()
        try:
            async with websockets.connect(url, additional_headers=headers(key)) as ws:
                opened = time.monotonic()
                tally["connections"] += 1
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
            tally["open ms"] += round((time.monotonic() - opened) * 1000)
            tally[f"closed {closed.rcvd.code if closed.rcvd else 'abnormally'}"] += 1
            await asyncio.sleep(0.05)
        except (OSError, websockets.InvalidHandshake):
            tally["refused connects"] += 1
            await asyncio.sleep(0.05)


def flooder_process(url: str, key: str, seconds: float, go, results) -> None:
    """The flooder in its own process: waits for `go`, floods for `seconds`, puts its tally on `results`."""
    go.wait()
    tally: Counter = Counter()
    asyncio.run(flooder(url, key, seconds, tally))
    results.put((dict(tally), cpu_seconds(os.getpid(), tree=False)))


def sink_process(port: int) -> None:
    """A WebSocket server that accepts any connection and discards every frame (the control's target)."""

    async def discard(ws) -> None:
        async for _ in ws:
            pass

    async def serve() -> None:
        async with websockets.serve(discard, "127.0.0.1", port, max_size=None):
            await asyncio.Future()

    asyncio.run(serve())


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000


async def phase(server: LiveServer, calm: list[str], seconds: float, target: tuple[str, str] | None) -> dict:
    """One phase: the calm kiosks' turns, with the flooder process on `target` (url, key) when given."""
    turns: list[float] = []
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    flood = None
    if target is not None:
        flood = context.Process(target=flooder_process, args=(*target, seconds, go, results))
        flood.start()
        await asyncio.sleep(1.0)  # the process's imports, before the clock starts
    server_cpu, own_cpu = cpu_seconds(server.process.pid), cpu_seconds(os.getpid(), tree=False)
    go.set()
    await asyncio.gather(*(calm_kiosk(server.url, key, seconds, turns) for key in calm))
    figures = {
        "turns": turns,
        "server_cpu": cpu_seconds(server.process.pid) - server_cpu,
        "calm_cpu": cpu_seconds(os.getpid(), tree=False) - own_cpu,
        "tally": {},
        "flooder_cpu": 0.0,
    }
    if flood is not None:
        figures["tally"], figures["flooder_cpu"] = await asyncio.to_thread(results.get, True, seconds + 30)
        await asyncio.to_thread(flood.join, 10)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=5, help="calm kiosks")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    args = parser.parse_args()
    sink_port = free_port()
    sink = multiprocessing.get_context("spawn").Process(target=sink_process, args=(sink_port,), daemon=True)
    sink.start()
    with tempfile.TemporaryDirectory() as directory, throwaway_database("sqlite", Path(directory)) as url:
        server = LiveServer(url, Path(directory), {"SPEECH_WARM_UP": "false"})
        keys = [server.prepare()] + [server.create_kiosk() for _ in range(args.kiosks)]
        server.start()
        wait_for_port(sink_port)
        try:
            calm, flood_key = keys[: args.kiosks], keys[args.kiosks]
            await asyncio.gather(*(calm_kiosk(server.url, k, 1, []) for k in calm))  # warm-up
            phases = {
                "no flood": await phase(server, calm, args.seconds, None),
                "flood a sink": await phase(server, calm, args.seconds, (f"ws://127.0.0.1:{sink_port}/", "")),
                "flood our server": await phase(server, calm, args.seconds, (server.url, flood_key)),
            }
        finally:
            server.stop()
            sink.terminate()
            sink.join(10)
    print(f"calm kiosks={args.kiosks} phase={args.seconds:.0f}s cores={os.cpu_count()}")
    base = phases["no flood"]["turns"]
    for name, figures in phases.items():
        turns, tally = figures["turns"], figures["tally"]
        p50, p95 = percentile(turns, 0.5), percentile(turns, 0.95)
        ratio = f"x{p50 / percentile(base, 0.5):.2f}/x{p95 / percentile(base, 0.95):.2f}"
        closes = {k: v for k, v in tally.items() if k.startswith("closed")}
        print(
            f"{name:16s} turns={len(turns):4d} p50={p50:6.1f} ms p95={p95:6.1f} ms ({ratio} of no flood)"
            f" cpu s: server={figures['server_cpu']:.1f} calm={figures['calm_cpu']:.1f}"
            f" flooder={figures['flooder_cpu']:.1f}"
        )
        if tally:
            print(
                f"{'':16s} flooder: frames sent={tally.get('sent', 0)} refused={tally.get('refused', 0)}"
                f" closes={closes} refused connects={tally.get('refused connects', 0)}"
                f" connections={tally.get('connections', 0)} open={tally.get('open ms', 0) / 1000:.1f} s in all"
            )


if __name__ == "__main__":
    asyncio.run(main())
