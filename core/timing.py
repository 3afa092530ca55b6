"""Turn timings: how long the visitor waited for the first audio, split between the upstream services and our server.

Both voice paths report a `TurnTiming` per answered turn (docs/metrics.md gives the exact points measured).
On the Legacy path the upstream part is the time spent inside the speech and chat engines: each call to one runs
inside `upstream_call()`, which adds its duration to the turn being timed (`upstream_clock()`, read with
`upstream_seconds()`). The clock is a
context variable holding a list, so calls made in worker threads (`asyncio.to_thread`, `run_blocking`) and in tasks
started inside the turn are counted too. Importing this module loads nothing else of the project.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

_clock: ContextVar[list[float] | None] = ContextVar("upstream_clock", default=None)


@dataclass(frozen=True)
class TurnTiming:
    """End of the visitor's turn → first audio (`ttfa_ms`) = `upstream_ms` + `server_ms`, all in ms."""

    ttfa_ms: float
    upstream_ms: float
    server_ms: float

    @classmethod
    def split(cls, ttfa_ms: float, upstream_ms: float) -> TurnTiming:
        """The timing of a turn that waited `ttfa_ms`, `upstream_ms` of them for the upstream (kept within 0..ttfa)."""
        upstream = min(max(upstream_ms, 0.0), ttfa_ms)
        return cls(ttfa_ms, upstream, ttfa_ms - upstream)


@contextmanager
def upstream_clock() -> Iterator[None]:
    """Time one turn: every `upstream_call()` made inside the block counts towards `upstream_seconds()`."""
    token = _clock.set([])
    try:
        yield
    finally:
        _clock.reset(token)


def upstream_seconds() -> float:
    """Seconds spent in upstream calls so far in the enclosing `upstream_clock()` (0 outside one)."""
    return sum(_clock.get() or ())


@contextmanager
def upstream_call() -> Iterator[None]:
    """Count the enclosed call to an upstream engine (speech recognition, chat model, synthesis) as upstream time."""
    spent = _clock.get()
    started = time.perf_counter()
    try:
        yield
    finally:
        if spent is not None:
            spent.append(time.perf_counter() - started)
