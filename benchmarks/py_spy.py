"""py-spy on a server process during a benchmark, and the top costs of its event loop's thread from the raw stacks."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path


def profile(pid: int, seconds: float, path: Path) -> subprocess.Popen:
    """py-spy sampling the server (raw stacks, aggregated by `top_costs`)."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw", "-o", str(path)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# The event loop's frame: asyncio's `_run_once`; under uvloop (the workers' loop) the loop is C code below the
# runner's frame, whose own samples are uvloop's work (socket reads and writes, callbacks).
_LOOP_FRAME = re.compile(r"_run_once|^Runner\.run \(asyncio/runners\.py")


def top_costs(path: Path, count: int = 30) -> dict[str, list[tuple[float, str]]]:
    """The functions of the event loop's thread with the most samples, in % of its samples: inclusive (the
    function and what it calls) and self (the function's own code), waiting in `select` left out."""
    inclusive: Counter = Counter()
    own: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        loop = [i for i, frame in enumerate(frames) if _LOOP_FRAME.search(frame)]
        if not loop or "select (selectors.py" in frames[-1]:
            continue  # other threads (the database's, the speech engines') and the idle loop
        total += int(samples)
        for frame in set(frames[loop[-1] + 1 :]):
            inclusive[frame] += int(samples)
        own[frames[-1]] += int(samples)

    def top(counter: Counter, n: int) -> list[tuple[float, str]]:
        return [(round(100 * k / max(1, total), 1), frame) for frame, k in counter.most_common(n)]

    return {"inclusive": top(inclusive, count), "self": top(own, count // 2)}
