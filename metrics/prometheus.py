"""``/metrics``: Prometheus exposition computed from the shared database at scrape time.

Every server process answers a scrape with the same totals, because the numbers are read from the
database that all of them write, not from per-process counters (no multiprocess directory to manage).
The ``process_*`` series (resident and virtual memory, CPU seconds, open files, start time; Linux) are the
exception: they describe the one process that answered the scrape, so scrape each worker's own port for them.
Auth: ``Authorization: Bearer <METRICS_SCRAPE_TOKEN>`` when that setting is set, or a staff user
(API token or admin session).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework import exceptions

from core.garbage import PAUSES

from .authentication import BearerTokenAuthentication, scrape_token_matches
from .cost import cost_status
from .models import AlertState, Mode, SessionMetric, TurnMetric
from .refusals import refusal_counts
from .sources import sources

TTFA_BUCKETS_MS = (250, 500, 750, 1000, 1500, 2000, 3000, 5000)
SERVER_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000)
# The turn's wait for the first audio and its two parts (docs/metrics.md): field, metric, help, buckets.
LATENCIES = (
    ("ttfa_ms", "reception_time_to_first_audio_ms", "End of speech to first audio, ms.", TTFA_BUCKETS_MS),
    (
        "upstream_ms",
        "reception_upstream_first_audio_ms",
        "End of speech to the upstream's first audio at our server, ms.",
        TTFA_BUCKETS_MS,
    ),
    ("server_ms", "reception_server_added_ms", "Time our server adds to the first audio, ms.", SERVER_BUCKETS_MS),
)


def _sessions() -> Iterator[Metric]:
    started = CounterMetricFamily("reception_sessions_started", "Sessions started, by starting path.", labels=["mode"])
    for mode, n in SessionMetric.objects.values_list("mode").annotate(n=Count("id")).order_by("mode"):
        started.add_metric([mode], n)
    yield started
    ended = CounterMetricFamily(
        "reception_sessions_ended", "Sessions ended, by starting path and outcome.", labels=["mode", "outcome"]
    )
    rows = SessionMetric.objects.exclude(ended_at=None).values_list("mode", "outcome").annotate(n=Count("id"))
    for mode, outcome, n in rows.order_by("mode", "outcome"):
        ended.add_metric([mode, outcome], n)
    yield ended


def _turns() -> Iterator[Metric]:
    turns = CounterMetricFamily("reception_turns", "Assistant turns, by path.", labels=["path"])
    failed = CounterMetricFamily("reception_turn_errors", "Failed turns, by path.", labels=["path"])
    cost = CounterMetricFamily("reception_cost_usd", "Recorded model cost in USD, by path.", labels=["path"])
    latencies = [HistogramMetricFamily(name, doc, labels=["path"]) for _, name, doc, _ in LATENCIES]
    for path in Mode.values:
        qs = TurnMetric.objects.filter(path=path)
        agg = qs.aggregate(n=Count("id"), bad=Count("id", filter=Q(ok=False)), usd=Sum("cost_usd"))
        turns.add_metric([path], agg["n"])
        failed.add_metric([path], agg["bad"])
        cost.add_metric([path], float(agg["usd"] or 0))
        for (field, _, _, bounds), histogram in zip(LATENCIES, latencies, strict=True):
            timed = qs.aggregate(
                n=Count("id", filter=Q(**{f"{field}__isnull": False})),
                ms=Sum(field),
                **{f"le{b}": Count("id", filter=Q(**{f"{field}__lte": b})) for b in bounds},
            )
            buckets = [(str(b), timed[f"le{b}"]) for b in bounds] + [("+Inf", timed["n"])]
            histogram.add_metric([path], buckets, sum_value=timed["ms"] or 0)
    yield from (turns, failed, cost, *latencies)


def _money() -> Iterator[Metric]:
    money = cost_status()
    for name, doc, value in (
        ("reception_realtime_spend_last_hour_usd", "Realtime spend in the rolling hour.", money.spend_last_hour),
        ("reception_realtime_reserved_usd", "Unused part of open Realtime reservations.", money.reserved),
        ("reception_realtime_cost_limit_usd", "Effective hourly Realtime limit.", money.limit),
        (
            "reception_realtime_projected_hour_usd",
            "Next hour's spend at the 15-minute burn rate.",
            money.projected_next_hour,
        ),
    ):
        yield GaugeMetricFamily(name, doc, value=float(value))


def _alerts_and_refusals() -> Iterator[Metric]:
    alert = GaugeMetricFamily("reception_alert_active", "1 while an alert is raised.", labels=["alert"])
    for name, active in AlertState.objects.values_list("name", "active").order_by("name"):
        alert.add_metric([name], float(active))
    yield alert
    refused = CounterMetricFamily(
        "reception_kiosk_rate_limited",
        "Kiosk frames and connections refused by a rate limit, by limit (flood_closed: sockets closed, 4429; "
        "flooding: connections refused at the handshake after a 4429).",
        labels=["limit"],
    )
    for limit, n in refusal_counts().items():
        refused.add_metric([limit], n)
    yield refused


class DatabaseCollector:
    """A prometheus_client collector whose every sample is a database aggregate."""

    def collect(self) -> Iterator[Metric]:
        yield from _sessions()
        yield from _turns()
        yield from _money()
        for families in sources.prometheus:  # the guards, emergency flags and fallbacks, from fallback
            yield from families()
        yield from _alerts_and_refusals()


def exposition() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    ProcessCollector(registry=registry)
    registry.register(PAUSES)  # this process's garbage-collector pauses and frozen objects (`core.garbage`)
    return generate_latest(registry)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics for a Prometheus scraper (scrape token) or staff."""
    if not scrape_token_matches(request):
        user = request.user
        try:
            found = BearerTokenAuthentication().authenticate(request)
        except exceptions.AuthenticationFailed:
            return HttpResponse(
                "Invalid token.\n", status=401, content_type="text/plain", headers={"WWW-Authenticate": "Bearer"}
            )
        if found is not None:
            user = found[0]
        if not (user.is_authenticated and user.is_staff):
            code = 403 if user.is_authenticated else 401
            return HttpResponse("Staff or the scrape token only.\n", status=code, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
