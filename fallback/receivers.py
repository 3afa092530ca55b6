"""What the fallback app does when the apps below it, or its own guards, announce something (connected in
``FallbackConfig.ready``), and what it hands to ``metrics.sources``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from metrics.models import Outcome
from metrics.signals import price_version_added, realtime_session_ended, realtime_spend_recorded, realtime_turn_recorded
from metrics.sources import sources
from reception.signals import visits_purged

from . import guards, reporting
from .autopilot import demote_on_trip
from .config import load_cost_limit
from .models import AuditEntry, FallbackEvent, FallbackReason
from .signals import guard_tripped

# Fallbacks that count as a Realtime failure for the error-rate guard (emergency and cost ones do not).
FAILURE_FALLBACKS = {FallbackReason.CONNECTION_ERROR, FallbackReason.UPSTREAM_ERROR, FallbackReason.LATENCY}


def refresh_cost_guard(sender: Any, *, now: datetime, **kwargs: Any) -> None:
    """The metrics writer added Realtime spend: hold it to the effective hourly limit."""
    guards.refresh_cost_guard(load_cost_limit(), now=now)


def count_turn_latency(sender: Any, *, ttfa_ms: list[float], at: datetime, **kwargs: Any) -> None:
    guards.record_turn_latency(*ttfa_ms, now=at)


def count_session_outcome(sender: Any, *, session_id: str, outcome: str, at: datetime, **kwargs: Any) -> None:
    """A Realtime session ended: a failure if it errored or fell back for a Realtime fault."""
    moved = FallbackEvent.objects.filter(session_id=session_id, reason__in=FAILURE_FALLBACKS).exists()
    guards.record_session_outcome(not (outcome == Outcome.ERROR or moved), now=at)


def audit_price_version(
    sender: Any, *, actor: str, reason: str, before: dict[str, Any], after: dict[str, Any], **kwargs: Any
) -> None:
    AuditEntry.objects.create(actor=actor, action="price_version_added", reason=reason, before=before, after=after)


def audit_purge(sender: Any, *, actor: str, reason: str, purged: int, older_than_days: int, **kwargs: Any) -> None:
    AuditEntry.objects.create(
        actor=actor,
        action="visitors_purged",
        reason=reason[:500],
        before={"visits": purged, "older_than_days": older_than_days},
        after={"visits": 0},
    )


def connect() -> None:
    """Connect every receiver (idempotent: Django dedupes by dispatch_uid) and register the metrics sources."""
    guard_tripped.connect(demote_on_trip, dispatch_uid="fallback.autopilot")
    realtime_spend_recorded.connect(refresh_cost_guard, dispatch_uid="fallback.cost_guard")
    realtime_turn_recorded.connect(count_turn_latency, dispatch_uid="fallback.latency_guard")
    realtime_session_ended.connect(count_session_outcome, dispatch_uid="fallback.error_rate_guard")
    price_version_added.connect(audit_price_version, dispatch_uid="fallback.audit_price")
    visits_purged.connect(audit_purge, dispatch_uid="fallback.audit_purge")
    sources.register(
        cost_limit=load_cost_limit,
        session_fallbacks=reporting.session_fallbacks,
        fallbacks_by_reason=reporting.fallbacks_by_reason,
        session_detail=reporting.session_routing,
        prometheus=reporting.prometheus_families,
    )
