"""What the voice session manager calls: the per-session decision, fallback events, the emergency state.

All functions are synchronous (they use the ORM); async callers use the ``a``-prefixed twins.
"""

from __future__ import annotations

import logging
from datetime import datetime

from channels.db import database_sync_to_async
from django.utils import timezone

from .config import EmergencySnapshot, load_config, load_emergency
from .guards import (
    acquire_probe,
    load_guard_snapshots,
    record_connection_result,
    record_cost,
    record_fatal_upstream_error,
    record_session_outcome,
    record_turn_latency,
    refresh_cost_guard,
    release_probe,
)
from .models import FallbackEvent, FallbackReason, RolloutConfig, RoutingDecision
from .policy import Decision, decide, legacy

logger = logging.getLogger(__name__)


def _current_version() -> int:
    try:
        return RolloutConfig.objects.values_list("version", flat=True).first() or 0
    except Exception:  # the database itself is the problem
        return 0


def explain_session(session_id: str | None, *, now: datetime | None = None) -> Decision:
    """The decision a session would get now and why, without recording it or claiming a probe slot."""
    now = now or timezone.now()
    try:
        emergency = load_emergency()
        config = load_config(emergency)
        guards = load_guard_snapshots()
    except ValueError as exc:  # an out-of-range environment value
        return legacy("config_invalid", _current_version(), str(exc))
    except Exception as exc:
        logger.exception("routing state unavailable")
        return legacy("state_unavailable", _current_version(), f"{type(exc).__name__}: {exc}")
    return decide(config, guards, emergency, session_id, now=now)


def _claim_probes(decision: Decision, now: datetime) -> Decision:
    claimed: list[str] = []
    for name in decision.probe_guards:
        if not acquire_probe(name, now=now):
            for done in claimed:
                release_probe(done)
            return legacy(f"probe_quota:{name}", decision.config_version, "no probe slot left", decision.bucket)
        claimed.append(name)
    return decision


def decide_for_session(session_id: str | None, *, now: datetime | None = None) -> Decision:
    """Decide once, at session start, which voice path ``session_id`` gets, and record it. Never raises.

    Reads the config, emergency and guard state fresh from the database, refreshes the cost guard,
    claims probe slots of half-open guards, and writes a RoutingDecision row.
    """
    now = now or timezone.now()
    try:
        emergency = load_emergency()
        config = load_config(emergency)
        refresh_cost_guard(config.cost_limit_per_hour.value, now=now)
        guards = load_guard_snapshots()
    except ValueError as exc:
        decision = legacy("config_invalid", _current_version(), str(exc))
    except Exception as exc:
        logger.exception("routing state unavailable for session %r", session_id)
        decision = legacy("state_unavailable", _current_version(), f"{type(exc).__name__}: {exc}")
    else:
        decision = decide(config, guards, emergency, session_id, now=now)
        if decision.probe_guards:
            try:
                decision = _claim_probes(decision, now)
            except Exception as exc:
                logger.exception("probe claim failed for session %r", session_id)
                decision = legacy("state_unavailable", decision.config_version, f"{type(exc).__name__}: {exc}")
    try:
        RoutingDecision.objects.create(
            session_id=(session_id or "")[:64],
            mode=decision.mode,
            reason=decision.reason[:64],
            detail=decision.detail[:200],
            bucket=decision.bucket,
            config_version=decision.config_version,
        )
    except Exception:  # the decision stands; losing its record must not block the visitor
        logger.exception("could not record the routing decision of session %r", session_id)
    logger.info("session %s -> %s (%s; %s)", session_id, decision.mode, decision.reason, decision.detail)
    return decision


def record_fallback_event(session_id: str, reason: FallbackReason | str, detail: str = "") -> FallbackEvent:
    """Write down that a live session moved from Realtime to Legacy (do it before acting on the move)."""
    if reason not in FallbackReason.values:
        raise ValueError(f"Unknown fallback reason {reason!r}; expected one of {', '.join(FallbackReason.values)}.")
    return FallbackEvent.objects.create(session_id=session_id[:64], reason=reason, detail=detail[:500])


def emergency_status() -> EmergencySnapshot:
    """The emergency flags as they are in the database now (for sessions that start or reconnect)."""
    return load_emergency()


def record_realtime_cost(usd: float) -> str | None:
    """Add a Realtime turn's cost (USD) to the rolling hour; returns 'opened'/'closed' if the cost guard moved."""
    return record_cost(usd, load_config().cost_limit_per_hour.value)


adecide_for_session = database_sync_to_async(decide_for_session)
arecord_fallback_event = database_sync_to_async(record_fallback_event)
aemergency_status = database_sync_to_async(emergency_status)
arecord_session_outcome = database_sync_to_async(record_session_outcome)
arecord_turn_latency = database_sync_to_async(record_turn_latency)
arecord_connection_result = database_sync_to_async(record_connection_result)
arecord_fatal_upstream_error = database_sync_to_async(record_fatal_upstream_error)
arecord_realtime_cost = database_sync_to_async(record_realtime_cost)
