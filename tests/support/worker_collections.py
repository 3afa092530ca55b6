"""A worker's garbage collections during a load run, read from its /metrics (`core.garbage`)."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.support.live_server import LiveServer

SCRAPE_TOKEN = "load-test-scrape"  # the throwaway server's /metrics, on 127.0.0.1 only
LONG_PAUSES_SECONDS = ("0.025", "0.1")


def collections(server: LiveServer) -> dict[str, int]:
    """The worker's garbage collections so far (`core.garbage`): in all, full, and longer than each of
    LONG_PAUSES_SECONDS."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
    counts = dict.fromkeys(("all", "full", *(f"over_{b}_s" for b in LONG_PAUSES_SECONDS)), 0)
    for sample in (s for family in families if family.name == "python_gc_pause_seconds" for s in family.samples):
        bound = sample.labels.get("le")
        if sample.name == "python_gc_pause_seconds_count":
            counts["all"] += int(sample.value)
            counts["full"] += int(sample.value) if sample.labels["generation"] == "2" else 0
            for longer in LONG_PAUSES_SECONDS:
                counts[f"over_{longer}_s"] += int(sample.value)
        elif bound in LONG_PAUSES_SECONDS:
            counts[f"over_{bound}_s"] -= int(sample.value)
    return counts


def with_collections(server: LiveServer, options, load: Callable[[], dict]) -> dict:
    """`load()`'s figures, with (one worker; several have one /metrics each) the worker's collections during it."""
    if options.workers:
        return load()
    before = collections(server)
    result = load()
    try:
        after = collections(server)
    except OSError as error:  # the worker is gone: the run's figures stand without its collections
        print(f"the worker's /metrics did not answer: {error}", file=sys.stderr)
        return result
    result["server_gc"] = {key: after[key] - before[key] for key in before}
    return result
