"""What the metrics views show of the rollout: fallback counts, a session's routing, and the Prometheus families
of the guards, the emergency flags and the config version (handed to ``metrics.sources`` at startup)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .config import load_config, load_emergency
from .guards import load_guard_snapshots
from .models import FallbackEvent, GuardStatus, RoutingDecision


def fallbacks_by_reason(since: datetime, until: datetime) -> dict[str, int]:
    rows = FallbackEvent.objects.filter(created_at__gt=since, created_at__lte=until).values_list("reason", flat=True)
    return dict(sorted(Counter(rows).items()))


def session_fallbacks(session_id: str) -> int:
    """How many times a session moved from Realtime to Legacy."""
    return FallbackEvent.objects.filter(session_id=session_id).count()


def session_routing(session_id: str) -> dict[str, Any]:
    """The routing part of a session's detail page: its decision and its fallback events."""
    return {
        "decisions": RoutingDecision.objects.filter(session_id=session_id),
        "fallback_events": FallbackEvent.objects.filter(session_id=session_id),
    }


def prometheus_families() -> Iterator[Metric]:
    """Fallbacks by reason, guards open, the emergency flags and the rollout config version."""
    fallbacks = CounterMetricFamily(
        "reception_fallbacks", "Live sessions moved to Legacy, by reason.", labels=["reason"]
    )
    for reason, n in FallbackEvent.objects.values_list("reason").annotate(n=Count("id")).order_by("reason"):
        fallbacks.add_metric([reason], n)
    yield fallbacks
    guard = GaugeMetricFamily(
        "reception_guard_open", "1 while a guard blocks Realtime (open or half-open).", labels=["guard"]
    )
    for name, snapshot in sorted(load_guard_snapshots().items()):
        guard.add_metric([name], float(snapshot.state != GuardStatus.CLOSED))
    yield guard
    emergency = load_emergency()
    yield GaugeMetricFamily(
        "reception_emergency_stop", "1 while the emergency stop is on.", value=float(emergency.emergency_stop)
    )
    yield GaugeMetricFamily(
        "reception_force_fallback", "1 while force fallback is on.", value=float(emergency.force_fallback)
    )
    yield GaugeMetricFamily("reception_config_version", "Rollout config version.", value=load_config().version)
