"""Benchmark: a full garbage collection of a worker's heap, before and after `core.garbage` freezes it.

Loads what a worker's warm-up loads, over a throwaway migrated SQLite database: Django, the workflow, the
Realtime client, the speech engines and the greeting's audio (`--no-speech` leaves the speech engines out). Then
times `gc.collect()` `--repeat` times on that heap, alone and with `--garbage` objects of cyclic garbage laid on top
(what ended sessions leave for a collection to free); freezes the heap as the worker does, and times the same again.
Prints the medians and the ratio before / after with the garbage, in one run on one heap.
The heap is about half a running worker's (its server, channel layer, task queue and sessions are not loaded).

    python benchmarks/gc_pauses.py [--repeat 5] [--garbage 30000] [--no-speech]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.support.live_server import migrated_sqlite


def warm_worker_heap(speech: bool) -> None:
    """What a worker imports (its URL patterns and the kiosk socket's) and what its warm-up loads, in this thread."""
    os.environ["SPEECH_WARM_UP"] = "true" if speech else "false"
    import django

    django.setup()
    from django.urls import get_resolver

    from voice.legacy import warm_up
    from voice.routing import websocket_urlpatterns

    assert get_resolver().url_patterns and websocket_urlpatterns  # every view and consumer imported
    warm_up()


def full_collection_ms(repeat: int, garbage: int = 0) -> float:
    """The median of `repeat` full collections, each with `garbage` new cyclic objects to free."""
    times = []
    for _ in range(repeat):
        gc.disable()  # the garbage waits for the timed collection, as a full collection finds it
        for _ in range(garbage // 2):  # pairs that refer to each other: only the collector frees them
            first, second = {}, {}
            first["other"], second["other"] = second, first
        gc.enable()
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--garbage", type=int, default=30_000, help="cyclic objects freed by each collection")
    parser.add_argument("--no-speech", action="store_true", help="leave the speech engines out of the heap")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        os.environ["DATABASE_URL"] = migrated_sqlite(Path(directory))
        result = measure(options)
    print(json.dumps(result, indent=2))
    return 0


def measure(options) -> dict:
    """The heap's full collections before and after the freeze."""
    warm_worker_heap(speech=not options.no_speech)
    from core.garbage import freeze_startup_heap

    gc.collect()
    tracked = len(gc.get_objects())
    before = {
        "heap_only": full_collection_ms(options.repeat),
        "with_garbage": full_collection_ms(options.repeat, options.garbage),
    }
    frozen = freeze_startup_heap()
    after = {
        "heap_only": full_collection_ms(options.repeat),
        "with_garbage": full_collection_ms(options.repeat, options.garbage),
    }
    return {
        "objects_tracked_before": tracked,
        "objects_frozen": frozen,
        "full_collection_ms_before": before,
        "full_collection_ms_after": after,
        "ratio_before_over_after_with_garbage": round(before["with_garbage"] / max(after["with_garbage"], 0.01), 1),
        "garbage_objects_per_collection": options.garbage,
    }


if __name__ == "__main__":
    sys.exit(main())
