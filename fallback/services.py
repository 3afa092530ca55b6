"""What the voice session manager calls: the per-session decision, fallback events, Realtime spend, the
emergency state.

All functions are synchronous (they use the ORM); async callers wrap them in ``core.blocking.run_blocking``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from metrics.cost import admit_realtime_session, cost_of_realtime_usage
from metrics.models import Mode, ModelPrice, UnknownPrice

from .config import EmergencySnapshot, load_config, load_cost_limit, load_emergency
from .guards import (
    GuardSnapshot,
    acquire_probe,
    cost_guard_open,
    load_guard_snapshots,
    projected_cost_guard,
    record_cost,
    refresh_cost_guard,
)
from .models import FallbackEvent, FallbackReason, GuardName, GuardStatus, RolloutConfig, RoutingDecision
from .policy import Decision, decide, legacy

logger = logging.getLogger(__name__)


def _current_version() -> int:
    try:
        return RolloutConfig.objects.values_list("version", flat=True).first() or 0
    except Exception:  # the database itself is the problem
        return 0


def decide_for_session(session_id: str | None, *, now: datetime | None = None, record: bool = True) -> Decision:
    """The voice path of ``session_id``, decided once for its whole life; never raises.

    A new session: the policy over the config, emergency and guard state read fresh from the database, then
    the probe slots of half-open guards and the cost admission (a reservation against the hourly limit);
    exactly one RoutingDecision is written, whose mode is the path the session gets, in the same transaction
    as the claims, so a refusal or a failed write leaves nothing claimed. A session seen before (a reconnect,
    in any process) gets its first decision again, except that a session that fell back stays on Legacy and
    a Realtime one moves to Legacy on an emergency stop, once the hour's spend has passed the limit (the cost
    guard is open), or when its cost can no longer be admitted (each with one fallback event).
    ``record=False`` answers the same without writing or claiming anything (the admin's simulation).
    """
    now = now or timezone.now()
    try:
        first = _first_decision(session_id)
        if first is not None:
            return _returning(first, now, record)
        decision = _fresh_decision(session_id, now, record)
        if not record:
            return _admit(session_id, decision, now, record=False)
        if session_id:
            return _record_first(session_id, decision, now)
        logger.warning("a session without an id -> %s (%s)", decision.mode, decision.reason)
        return decision
    except Exception as exc:  # e.g. the database is gone: on any doubt, Legacy
        logger.exception("routing failed for session %r", session_id)
        return legacy("state_unavailable", _current_version(), f"{type(exc).__name__}: {exc}")


def explain_session(session_id: str | None, *, now: datetime | None = None) -> Decision:
    """The decision `decide_for_session` would give ``session_id`` now, without recording or claiming anything."""
    return decide_for_session(session_id, now=now, record=False)


def _first_decision(session_id: str | None) -> RoutingDecision | None:
    if not session_id:
        return None
    return RoutingDecision.objects.filter(session_id=session_id[:64]).first()  # unique: one row at most


def _pinned(row: RoutingDecision) -> Decision:
    return Decision(row.mode, row.reason, row.config_version, row.detail, row.bucket, pinned=True)


def _returning(first: RoutingDecision, now: datetime, record: bool) -> Decision:
    """A session decided before: its first path, unless it fell back, is stopped, or no longer fits the budget."""
    if first.mode != Mode.REALTIME:
        return _pinned(first)
    version = first.config_version
    moved = FallbackEvent.objects.filter(session_id=first.session_id).order_by("created_at", "pk").first()
    if moved is not None:
        return legacy(f"fell_back:{moved.reason.lower()}", version, moved.detail, first.bucket)
    emergency = load_emergency()
    if emergency.emergency_stop:
        return _move_on_return(first, FallbackReason.EMERGENCY_STOP, f"{emergency.actor}: {emergency.reason}", record)
    # Past the hour's limit, live sessions move at their next turn boundary; a return is one (its own hold
    # would still admit it, and its next turn would spend past the limit).
    cost = _guards_now(load_config(emergency).cost_limit_per_hour.value, now, record)[GuardName.COST]
    if cost.state != GuardStatus.CLOSED:
        return _move_on_return(first, FallbackReason.COST_LIMIT, cost.last_reason, record)
    admission = admit_realtime_session(first.session_id, now=now, hold=record)
    if not admission.admitted:
        detail = f"{admission.reason}: estimate {admission.estimate_usd} USD, limit {admission.limit_usd} USD"
        return _move_on_return(first, FallbackReason.COST_LIMIT, detail, record)
    return _pinned(first)


def _move_on_return(first: RoutingDecision, reason: FallbackReason, detail: str, record: bool) -> Decision:
    if record:
        record_fallback_event(first.session_id, reason, detail)
    return legacy(f"fell_back:{reason.lower()}", first.config_version, detail, first.bucket)


def _fresh_decision(session_id: str | None, now: datetime, record: bool) -> Decision:
    """The policy's answer for a new session (the cost guard refreshed first; projected only when not recording)."""
    try:
        emergency = load_emergency()
        config = load_config(emergency)
        guards = _guards_now(config.cost_limit_per_hour.value, now, record)
    except ValueError as exc:  # an out-of-range environment value
        return legacy("config_invalid", _current_version(), str(exc))
    return decide(config, guards, emergency, session_id, now=now)


def _guards_now(limit: float, now: datetime, record: bool) -> dict[str, GuardSnapshot]:
    """Every guard, the cost guard brought up to the hour's spend (refreshed when recording, else projected)."""
    if record:
        refresh_cost_guard(limit, now=now)
    guards = load_guard_snapshots()
    if not record:
        guards[GuardName.COST] = projected_cost_guard(guards[GuardName.COST], limit, now=now)
    return guards


def _record_first(session_id: str, decision: Decision, now: datetime) -> Decision:
    """Claim what a Realtime decision needs and write the one decision row, all in one transaction.

    When another process wrote this session's first decision meanwhile, everything here rolls back and
    that decision is the session's.
    """
    try:
        with transaction.atomic():
            decision = _admit(session_id, decision, now, record=True)
            RoutingDecision.objects.create(
                session_id=session_id[:64],
                mode=decision.mode,
                reason=decision.reason[:64],
                detail=decision.detail[:200],
                bucket=decision.bucket,
                config_version=decision.config_version,
            )
    except IntegrityError:
        first = _first_decision(session_id)
        if first is None:
            raise
        return _returning(first, now, record=True)
    logger.info("session %s -> %s (%s; %s)", session_id, decision.mode, decision.reason, decision.detail)
    return decision


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _admit(session_id: str | None, decision: Decision, now: datetime, *, record: bool) -> Decision:
    """Claim the probe slots of half-open guards, then reserve the session's cost; Legacy (with the reason) when
    either is refused, and then nothing stays claimed (one savepoint). ``record=False`` only checks."""
    if not decision.realtime or not session_id:
        return decision
    try:
        with transaction.atomic():
            for name in decision.probe_guards if record else ():
                if not acquire_probe(name, now=now):
                    raise _Refused(f"probe_quota:{name}", "no probe slot left")
            admission = admit_realtime_session(session_id, now=now, hold=record)
            if not admission.admitted:
                raise _Refused(admission.reason, f"estimate {admission.estimate_usd} USD")
    except _Refused as refusal:
        return legacy(refusal.reason, decision.config_version, refusal.detail, decision.bucket)
    return decision


def record_fallback_event(session_id: str, reason: FallbackReason | str, detail: str = "") -> FallbackEvent:
    """Write down that a live session moved from Realtime to Legacy (do it before acting on the move)."""
    if reason not in FallbackReason.values:
        raise ValueError(f"Unknown fallback reason {reason!r}; expected one of {', '.join(FallbackReason.values)}.")
    return FallbackEvent.objects.create(session_id=session_id[:64], reason=reason, detail=detail[:500])


def control_state() -> tuple[EmergencySnapshot, bool]:
    """What live sessions must follow: the emergency flags, and whether the hour's cost limit is passed."""
    return load_emergency(), cost_guard_open()


@dataclass(frozen=True)
class RealtimeSpend:
    """One Realtime response's cost, already added to the rolling hour, whether the hour's limit is passed, and
    the price version it was priced at (None: unpriced)."""

    usd: Decimal | None
    limit_reached: bool
    price: ModelPrice | None = None


def record_realtime_spend(session_id: str, model: str, usage: Mapping[str, Any]) -> RealtimeSpend:
    """Price one ``response.done`` usage and add it to the rolling hour now, before the session's next turn.

    The live cost limit reads this at the turn boundary, so it never waits for the metrics writer; the turn's
    metric row is then recorded with ``spend_recorded=True`` so the spend is not counted twice. An unpriced
    model leaves the spend unknown (logged) and the limit unchanged.
    """
    try:
        usd, price = cost_of_realtime_usage(model, usage)
    except (UnknownPrice, ValueError) as exc:
        logger.error("Realtime response of session %s not priced: %s", session_id, exc)
        return RealtimeSpend(None, cost_guard_open())
    cost_guard = record_cost(usd, load_cost_limit(), session_id=session_id)
    return RealtimeSpend(usd, cost_guard.open, price)
