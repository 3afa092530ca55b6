"""The worker's cyclic garbage collector: its start-up heap frozen, and the pauses it still makes, for /metrics.

A worker holds half a million objects once Django, the workflow and the speech models are loaded. Every full
(generation 2) collection walked all of them: 160-340 ms with the event loop stopped, so every kiosk's audio
stood still that long. Frozen after the warm-up (`gc.freeze`, CPython's permanent generation), they are skipped;
a full collection then walks what the sessions made since (docs/deploy.md has the figures). What start-up made and
later drops is freed by reference counting as before; only a cycle among those objects would stay.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

logger = logging.getLogger(__name__)

PAUSE_BUCKETS_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = (0, 1, 2)


class PauseRecorder:
    """A `gc.callbacks` entry: the length of each collection, by generation, as a cumulative histogram.

    The collector never runs two collections at once, so the callback is never re-entered: plain counters do.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock, self.started = clock, 0.0
        self.buckets = {generation: [0] * len(PAUSE_BUCKETS_SECONDS) for generation in GENERATIONS}
        self.counts = dict.fromkeys(GENERATIONS, 0)
        self.sums = dict.fromkeys(GENERATIONS, 0.0)

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = self.clock()
            return
        seconds, generation = self.clock() - self.started, info["generation"]
        self.counts[generation] += 1
        self.sums[generation] += seconds
        buckets = self.buckets[generation]
        for index, bound in enumerate(PAUSE_BUCKETS_SECONDS):
            if seconds <= bound:
                buckets[index] += 1

    def collect(self) -> Iterator[Metric]:
        """For a prometheus_client registry: `python_gc_pause_seconds` by generation, and
        `python_gc_frozen_objects`."""
        pauses = HistogramMetricFamily(
            "python_gc_pause_seconds",
            "Cyclic garbage collections of this process and how long each stopped it, by generation.",
            labels=["generation"],
        )
        for generation in GENERATIONS:
            bounds = [(str(bound), n) for bound, n in zip(PAUSE_BUCKETS_SECONDS, self.buckets[generation], strict=True)]
            pauses.add_metric(
                [str(generation)], [*bounds, ("+Inf", self.counts[generation])], sum_value=self.sums[generation]
            )
        yield pauses
        yield GaugeMetricFamily(
            "python_gc_frozen_objects",
            "Objects frozen after the warm-up, which no collection walks.",
            value=gc.get_freeze_count(),
        )


PAUSES = PauseRecorder()


def record_pauses() -> None:
    """Time this process's collections from now on (once per process; a second call changes nothing)."""
    if PAUSES not in gc.callbacks:
        gc.callbacks.append(PAUSES)


def freeze_startup_heap() -> int:
    """Collect once, then freeze every object left, so later collections skip them; the number frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("start-up heap frozen: %d objects", frozen)
    return frozen
