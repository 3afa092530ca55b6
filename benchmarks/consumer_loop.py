"""Benchmark: the kiosk consumer's message loop against Channels' own, per message, in the same run.

Both loops read the same two sources (a socket's frames, all queued, and a quiet channel layer) and hand each
message to a handler that does nothing: what is left is the loop's own cost. Channels' `await_many_dispatch` makes a
task for the next message and an `asyncio.wait` over both sources for every message; `core.dispatch.dispatch_in_turn`
reads each source in one long-lived task. CPU µs per message and the ratio ours/Channels, on asyncio and on uvloop
(what the workers run).

    python benchmarks/consumer_loop.py [--messages 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

import uvloop
from channels.utils import await_many_dispatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.dispatch import dispatch_in_turn


class _End(Exception):
    pass


async def cpu_us_per_message(loop_function, messages: int) -> float:
    frames: asyncio.Queue = asyncio.Queue()
    for _ in range(messages):
        frames.put_nowait({"type": "websocket.receive", "bytes": b"\x00" * 960})
    frames.put_nowait({"type": "end"})
    layer: asyncio.Queue = asyncio.Queue()  # nothing comes from the channel layer

    async def dispatch(message: dict) -> None:
        if message["type"] == "end":
            raise _End

    started = time.process_time()
    with contextlib.suppress(_End):
        await loop_function([frames.get, layer.get], dispatch)
    return (time.process_time() - started) / messages * 1e6


async def measure(messages: int, rounds: int) -> dict[str, float]:
    channels, ours = [], []
    for _ in range(rounds):  # interleaved, so that a noisy moment costs both alike
        channels.append(await cpu_us_per_message(await_many_dispatch, messages))
        ours.append(await cpu_us_per_message(dispatch_in_turn, messages))
    return {"channels_us": statistics.median(channels), "ours_us": statistics.median(ours)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    for name, run in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        figures = run(measure(options.messages, options.rounds))
        ratio = figures["ours_us"] / figures["channels_us"]
        print(
            f"{name:8} Channels' loop {figures['channels_us']:.2f} µs/message, ours {figures['ours_us']:.2f}"
            f" µs/message: {ratio:.2f}×"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
