"""The garbage collector's pauses timed by generation, and a worker's start-up heap frozen after its warm-up."""

from __future__ import annotations

import gc
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import garbage
from tests.support.live_server import LiveServer, migrated_sqlite


@pytest.fixture
def recorder():
    """A recorder of the collections made during the test, taken off `gc.callbacks` afterwards. The automatic
    collections are off meanwhile, so none lands between reading the recorder and reading its metrics."""
    recorder = garbage.PauseRecorder()
    gc.disable()
    gc.callbacks.append(recorder)
    try:
        yield recorder
    finally:
        gc.callbacks.remove(recorder)
        gc.enable()


def samples(families) -> dict[tuple[str, str, str], float]:
    """(name, generation, le) -> value of every sample."""
    return {
        (s.name, s.labels.get("generation", ""), s.labels.get("le", "")): s.value
        for family in families
        for s in family.samples
    }


def test_each_collection_is_timed_under_its_generation(recorder):
    """At least: another thread's explicit collection (a warm-up's freeze, say) may come too."""
    gc.collect(2)
    gc.collect(2)
    gc.collect(0)
    assert recorder.counts[2] >= 2 and recorder.counts[0] >= 1 and recorder.sums[2] > 0
    values = samples(recorder.collect())
    for generation in garbage.GENERATIONS:
        count = recorder.counts[generation]
        assert values[("python_gc_pause_seconds_count", str(generation), "")] == count
        assert values[("python_gc_pause_seconds_bucket", str(generation), "+Inf")] == count
        bounds = [
            values[("python_gc_pause_seconds_bucket", str(generation), str(b))] for b in garbage.PAUSE_BUCKETS_SECONDS
        ]
        assert bounds == sorted(bounds) and bounds[-1] <= count  # cumulative, as Prometheus reads a histogram


def test_a_pause_lands_in_the_first_bucket_that_holds_it():
    recorder = garbage.PauseRecorder(clock=iter([10.0, 10.03]).__next__)  # a collection of 30 ms
    recorder("start", {"generation": 1})
    recorder("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    counts = dict(zip(garbage.PAUSE_BUCKETS_SECONDS, recorder.buckets[1], strict=True))
    assert counts == {0.001: 0, 0.005: 0, 0.01: 0, 0.025: 0, 0.05: 1, 0.1: 1, 0.25: 1, 0.5: 1, 1.0: 1}
    assert recorder.sums[1] == pytest.approx(0.03)


def test_recording_is_installed_once():
    installed = garbage.PAUSES in gc.callbacks
    try:
        garbage.record_pauses()
        garbage.record_pauses()
        assert gc.callbacks.count(garbage.PAUSES) == 1
    finally:
        if not installed:
            gc.callbacks.remove(garbage.PAUSES)


def test_the_frozen_heap_is_left_out_of_collections():
    """Counts only bound from below: a frozen object that loses its last reference (here or in another thread)
    leaves the frozen set at once, so the count can fall between two reads."""
    survivor = [object() for _ in range(1000)]
    try:
        assert garbage.freeze_startup_heap() > len(survivor)
        assert not any(item is survivor for item in gc.get_objects())  # frozen: no generation lists it
        gc.collect()
        assert not any(item is survivor for item in gc.get_objects())  # a full collection leaves it frozen
        assert gc.get_freeze_count() > len(survivor)
    finally:
        gc.unfreeze()
    assert any(item is survivor for item in gc.get_objects())


def test_a_worker_freezes_its_heap_after_the_warm_up_and_serves_its_pauses(tmp_path):
    """The real worker: /metrics shows the heap frozen and the full collection that preceded the freeze."""
    server = LiveServer(migrated_sqlite(tmp_path), tmp_path, {"METRICS_SCRAPE_TOKEN": "scrape-secret"})
    server.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": "Bearer scrape-secret"}
        )
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(request, timeout=10) as response:
                families = list(text_string_to_metric_families(response.read().decode()))
            values = samples(families)
            if values[("python_gc_frozen_objects", "", "")] > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        server.stop()
    assert values[("python_gc_frozen_objects", "", "")] > 50_000  # Django, the apps and the workflow at least
    assert values[("python_gc_pause_seconds_count", "2", "")] >= 1  # the collection just before the freeze
    pauses = next(family for family in families if family.name == "python_gc_pause_seconds")
    assert pauses.type == "histogram"
