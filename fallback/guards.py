"""Automatic guards (circuit breakers) shared by every process through their database rows.

States: CLOSED (Realtime allowed) -> OPEN (blocked for a cooldown) -> HALF_OPEN (a few probe sessions)
-> CLOSED after enough good probes, or OPEN again on a failed probe. Each trip within the trip memory
doubles the cooldown, up to a cap. Every transition is a compare-and-set UPDATE (``WHERE state = seen``),
so when many processes see the same failure exactly one of them opens the guard and writes the audit row.

The cost guard has no probes: it opens at the hourly limit and closes once the rolling hour's spend
falls below 70 % of it (hysteresis instead of probing, since the window rolls by itself).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from metrics.ledger import add_spend, spend_last_hour
from metrics.stats import SLOW_TURN_MS

from .models import AuditEntry, GuardName, GuardState, GuardStatus
from .signals import guard_tripped

logger = logging.getLogger(__name__)

Admission = Literal["allow", "block", "probe"]

COST_RECOVERY_RATIO = 0.7  # the cost guard closes below 70 % of the hourly limit
TRIP_MEMORY = timedelta(hours=24)  # trips older than this no longer lengthen the cooldown


@dataclass(frozen=True)
class GuardParams:
    """When a guard trips and how it recovers."""

    window: timedelta
    min_samples: int  # no verdict on a rate below this many samples (no data is not a failure)
    min_failures: int
    failure_rate: float  # trips at >= this rate once the minimums are met
    consecutive_failures: int | None  # fast path: trips on this many failures in a row, window or not
    base_cooldown: timedelta = timedelta(minutes=10)
    max_cooldown: timedelta = timedelta(hours=2)
    probe_sessions: int = 5  # sessions admitted while half-open
    probes_to_close: int = 3  # successful probes that close the guard
    probe_timeout: timedelta = timedelta(minutes=10)  # probes that never report are given up after this


def guard_params(name: str) -> GuardParams:
    """The parameters of one guard (read at call time, so settings overrides apply)."""
    if name == GuardName.ERROR_RATE:
        return GuardParams(timedelta(minutes=15), 20, 5, float(settings.ALERT_ERROR_RATE_THRESHOLD), None)
    if name == GuardName.LATENCY:
        return GuardParams(timedelta(minutes=10), 50, 10, 0.2, None)
    if name == GuardName.CONNECTION:
        return GuardParams(timedelta(minutes=15), 20, 5, 0.5, 5)
    if name == GuardName.COST:
        return GuardParams(timedelta(hours=1), 0, 0, 1.0, None)
    raise ValueError(f"Unknown guard {name!r}; expected one of {', '.join(GuardName.values)}.")


@dataclass(frozen=True)
class GuardSnapshot:
    """What the pure policy needs to know about one guard."""

    name: str
    state: str
    retry_at: datetime | None = None
    half_open_since: datetime | None = None
    probe_budget: int = 0
    last_reason: str = ""

    @classmethod
    def from_row(cls, row: GuardState) -> GuardSnapshot:
        return cls(row.name, row.state, row.retry_at, row.half_open_since, row.probe_budget, row.last_reason)

    def admission(self, now: datetime) -> Admission:
        """allow: no objection; block: no Realtime; probe: Realtime only if a probe slot can be claimed."""
        if self.state not in GuardStatus.values:
            raise ValueError(f"Guard {self.name} has an unknown state {self.state!r}.")
        if self.state == GuardStatus.CLOSED:
            return "allow"
        if self.name == GuardName.COST:
            return "block"
        if self.state == GuardStatus.OPEN:
            return "probe" if self.retry_at is not None and now >= self.retry_at else "block"
        # Half-open: probe while slots are left, or when the last round's probes never reported back.
        timeout = guard_params(self.name).probe_timeout
        stale = self.half_open_since is not None and now - self.half_open_since >= timeout
        return "probe" if self.probe_budget > 0 or stale else "block"


def load_guard_snapshots() -> dict[str, GuardSnapshot]:
    """Every guard's current state, read from the database in one query (rows are created closed if absent)."""
    rows = {row.name: row for row in GuardState.objects.all()}
    if len(rows) < len(GuardName.values):  # a fresh or flushed database: a guard never tripped is closed
        GuardState.objects.bulk_create(
            [GuardState(name=name) for name in GuardName.values if name not in rows], ignore_conflicts=True
        )
        rows = {row.name: row for row in GuardState.objects.all()}
    return {name: GuardSnapshot.from_row(row) for name, row in rows.items()}


def _row(name: str) -> GuardState:
    return GuardState.objects.get_or_create(name=name)[0]


def _audit(name: str, action: str, reason: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    AuditEntry.objects.create(actor=f"system:guard:{name}", action=action, reason=reason, before=before, after=after)
    logger.warning("guard %s: %s (%s)", name, action, reason)


def _cooldown(trips: int, params: GuardParams) -> timedelta:
    return min(params.base_cooldown * 2 ** min(trips - 1, 16), params.max_cooldown)


def _fresh_counters(now: datetime) -> dict[str, Any]:
    """The fields every transition and the manual reset clear: no probe round, an empty window from ``now``."""
    return {
        "half_open_since": None,
        "probe_budget": 0,
        "probe_successes": 0,
        "window_started_at": now,
        "window_samples": 0,
        "window_failures": 0,
        "consecutive_failures": 0,
        "updated_at": now,
    }


def _trip(row: GuardState, reason: str, now: datetime) -> bool:
    """Open the guard if it is still in the state ``row`` saw; True only for the one caller that did."""
    params = guard_params(row.name)
    recent = row.last_trip_at is not None and now - row.last_trip_at < TRIP_MEMORY
    trips = row.trip_count + 1 if recent else 1
    cooldown = _cooldown(trips, params)
    changed = GuardState.objects.filter(pk=row.pk, state=row.state, trip_count=row.trip_count).update(
        state=GuardStatus.OPEN,
        trip_count=trips,
        last_trip_at=now,
        opened_at=now,
        cooldown_seconds=int(cooldown.total_seconds()),
        retry_at=now + cooldown,
        last_reason=reason[:200],
        **_fresh_counters(now),
    )
    if not changed:
        return False  # another process tripped it first
    action = "guard_reopened" if row.state == GuardStatus.HALF_OPEN else "guard_opened"
    _audit(
        row.name,
        action,
        reason,
        {"state": row.state, "trip_count": row.trip_count},
        {"state": GuardStatus.OPEN, "trip_count": trips, "cooldown_seconds": int(cooldown.total_seconds())},
    )
    guard_tripped.send(sender=GuardState, name=row.name, now=now)  # the autopilot may demote one stage
    return True


def _close(row: GuardState, reason: str, now: datetime) -> bool:
    changed = GuardState.objects.filter(pk=row.pk, state=row.state).update(
        state=GuardStatus.CLOSED,
        opened_at=None,
        retry_at=None,
        last_reason=reason[:200],
        **_fresh_counters(now),
    )
    if changed:
        _audit(row.name, "guard_closed", reason, {"state": row.state}, {"state": GuardStatus.CLOSED})
    return bool(changed)


def _trip_reason(streak: int, samples: int, failures: int, params: GuardParams) -> str | None:
    if params.consecutive_failures and streak >= params.consecutive_failures:
        return f"{streak} consecutive failures"
    if samples >= max(params.min_samples, 1) and failures >= params.min_failures:
        rate = failures / samples
        if rate >= params.failure_rate:
            return f"failure rate {rate:.1%} over {samples} samples (threshold {params.failure_rate:.1%})"
    return None


def record_sample(name: str, ok: bool, *, now: datetime | None = None) -> str | None:
    """Count one outcome for a guard; return the transition it caused ('opened', 'closed', 'reopened') or None.

    CLOSED: the sample enters the window (which restarts once older than the guard's window) and may trip it.
    HALF_OPEN: the sample is a probe result. OPEN: ignored (it comes from a session admitted earlier).
    """
    return record_samples(name, [ok], now=now)


def record_samples(name: str, outcomes: Sequence[bool], *, now: datetime | None = None) -> str | None:
    """Count several outcomes, in order, as ``record_sample`` would one after another (the metrics writer's
    batch); return the last transition they caused, or None.

    A closed guard takes them all in one update, and trips if it would have after any one of them.
    """
    params = guard_params(name)
    if name == GuardName.COST:
        raise ValueError("The cost guard is fed by record_cost(), not by samples.")
    now = now or timezone.now()
    left, moved = list(outcomes), None
    with transaction.atomic():
        while left:
            row = _row(name)
            if row.state == GuardStatus.OPEN:
                break
            if row.state == GuardStatus.HALF_OPEN:
                moved = _probe_result(row, left.pop(0), params, now) or moved
                continue
            return _count_in_window(row, left, params, now) or moved
    return moved


def _probe_result(row: GuardState, ok: bool, params: GuardParams, now: datetime) -> str | None:
    """A half-open guard's probe session reported: one failure reopens it, enough successes close it."""
    if not ok:
        return "reopened" if _trip(row, "a probe session failed", now) else None
    qs = GuardState.objects.filter(pk=row.pk, state=GuardStatus.HALF_OPEN)
    qs.update(probe_successes=F("probe_successes") + 1, updated_at=now)
    row.refresh_from_db()
    if row.state == GuardStatus.HALF_OPEN and row.probe_successes >= params.probes_to_close:
        return "closed" if _close(row, f"{row.probe_successes} probe sessions succeeded", now) else None
    return None


def _count_in_window(row: GuardState, outcomes: list[bool], params: GuardParams, now: datetime) -> str | None:
    """A closed guard: add the outcomes to its window (F() updates) and trip it if it would have after any one."""
    qs = GuardState.objects.filter(pk=row.pk)
    if row.window_started_at is None or now - row.window_started_at >= params.window:
        qs.filter(window_started_at=row.window_started_at).update(
            window_started_at=now, window_samples=0, window_failures=0
        )
    count, failures, streak = len(outcomes), outcomes.count(False), row.consecutive_failures
    trailing = count - 1 - max((i for i, ok in enumerate(outcomes) if ok), default=-1)
    qs.update(
        window_samples=F("window_samples") + count,
        window_failures=F("window_failures") + failures,
        consecutive_failures=F("consecutive_failures") + count if trailing == count else trailing,
        updated_at=now,
    )
    row.refresh_from_db()
    if trailing == count:
        streak = row.consecutive_failures - count  # other processes' failures in a row count too
    samples, failed = row.window_samples - count, row.window_failures - failures
    for ok in outcomes:
        samples, failed, streak = samples + 1, failed + (not ok), 0 if ok else streak + 1
        if reason := _trip_reason(streak, samples, failed, params):
            return "opened" if row.state == GuardStatus.CLOSED and _trip(row, reason, now) else None
    return None


def record_session_outcome(ok: bool, *, now: datetime | None = None) -> str | None:
    """A Realtime session ended: ok=False if it errored or failed over mid-session (not if the visitor left)."""
    return record_sample(GuardName.ERROR_RATE, ok, now=now)


def record_turn_latency(*ttfa_ms: float, now: datetime | None = None) -> str | None:
    """Realtime turns' times to first audio, in order; slower than SLOW_TURN_MS counts as a failure."""
    if any(ms < 0 for ms in ttfa_ms):
        raise ValueError(f"Time to first audio cannot be negative ({min(ttfa_ms)} ms).")
    return record_samples(GuardName.LATENCY, [ms <= SLOW_TURN_MS for ms in ttfa_ms], now=now)


def record_connection_result(ok: bool, *, now: datetime | None = None) -> str | None:
    """One attempt to open a Realtime upstream connection succeeded or failed."""
    return record_sample(GuardName.CONNECTION, ok, now=now)


def record_fatal_upstream_error(detail: str, *, now: datetime | None = None) -> bool:
    """A failure no retry can fix (401, unknown model): open the connection guard at once.

    Returns True if this call opened it (False if it was already open).
    """
    now = now or timezone.now()
    with transaction.atomic():
        row = _row(GuardName.CONNECTION)
        if row.state == GuardStatus.OPEN:
            return False
        return _trip(row, f"fatal upstream error: {detail}", now)


def acquire_probe(name: str, *, now: datetime | None = None) -> bool:
    """Claim one probe slot of a guard that is due to probe; True if this session may be the probe."""
    params = guard_params(name)
    now = now or timezone.now()
    qs = GuardState.objects.filter(name=name)
    with transaction.atomic():
        # Open and cooled down: the first caller moves it to half-open and takes the first slot.
        if qs.filter(state=GuardStatus.OPEN, retry_at__lte=now).update(
            state=GuardStatus.HALF_OPEN,
            half_open_since=now,
            probe_budget=params.probe_sessions - 1,
            probe_successes=0,
            updated_at=now,
        ):
            _audit(name, "guard_half_open", "cooldown elapsed", {"state": "open"}, {"state": "half_open"})
            return True
        # Half-open whose probes never reported (a crashed process): start a fresh round.
        if qs.filter(state=GuardStatus.HALF_OPEN, half_open_since__lte=now - params.probe_timeout).update(
            half_open_since=now, probe_budget=params.probe_sessions - 1, probe_successes=0, updated_at=now
        ):
            return True
        return bool(
            qs.filter(state=GuardStatus.HALF_OPEN, probe_budget__gt=0).update(probe_budget=F("probe_budget") - 1)
        )


def cost_guard_transition(state: str, spend: float, limit_usd: float) -> Literal["open", "close"] | None:
    """Where the cost guard goes from ``state``: open at the hourly limit, close below 70 % of it (hysteresis)."""
    if state == GuardStatus.CLOSED and spend >= limit_usd:
        return "open"
    if state != GuardStatus.CLOSED and spend < COST_RECOVERY_RATIO * limit_usd:
        return "close"
    return None


def projected_cost_guard(guard: GuardSnapshot, limit_usd: float, *, now: datetime | None = None) -> GuardSnapshot:
    """The cost guard as `refresh_cost_guard` would leave it, without writing (for a decision that is only shown)."""
    move = cost_guard_transition(guard.state, float(spend_last_hour(now=now)), limit_usd)
    if move is None:
        return guard
    return replace(guard, state=GuardStatus.OPEN if move == "open" else GuardStatus.CLOSED)


@dataclass(frozen=True)
class CostCheck:
    """What re-checking the cost guard did ('opened', 'closed' or None), and whether it is open after it."""

    transition: Literal["opened", "closed"] | None
    open: bool


def refresh_cost_guard(limit_usd: float, *, now: datetime | None = None) -> CostCheck:
    """Open the cost guard at the hourly limit, close it below 70 % of it.

    Every session start and every priced response calls this, and nearly always nothing moves: the guard's state
    is read first, and only a due transition takes the write transaction, where it is checked again."""
    now = now or timezone.now()
    spend = float(spend_last_hour(now=now))
    state = GuardState.objects.filter(name=GuardName.COST).values_list("state", flat=True).first()
    if state is not None and cost_guard_transition(state, spend, limit_usd) is None:
        return CostCheck(None, state != GuardStatus.CLOSED)
    with transaction.atomic():
        row = _row(GuardName.COST)
        move = cost_guard_transition(row.state, spend, limit_usd)
        if move is None:
            return CostCheck(None, row.state != GuardStatus.CLOSED)
        if move == "open":
            reason = f"spend {spend:.2f} USD in the last hour reached the limit {limit_usd:.2f} USD"
            moved = _trip(row, reason, now)
        else:
            reason = f"spend {spend:.2f} USD fell below {COST_RECOVERY_RATIO:.0%} of the limit {limit_usd:.2f} USD"
            moved = _close(row, reason, now)
        if moved:
            return CostCheck("opened" if move == "open" else "closed", move == "open")
    return CostCheck(None, cost_guard_open())  # another process moved it first: what it left counts


def cost_guard_open() -> bool:
    """True while the hour's Realtime spend holds the cost guard open (live sessions move to Legacy)."""
    return GuardState.objects.filter(name=GuardName.COST).exclude(state=GuardStatus.CLOSED).exists()


def record_cost(
    usd: float | Decimal, limit_usd: float, *, now: datetime | None = None, session_id: str | None = None
) -> CostCheck:
    """Add Realtime spend to the ledger's current minute (see ``metrics.ledger.add_spend``) and re-check the cost
    guard against ``limit_usd``."""
    now = now or timezone.now()
    add_spend(usd, now=now, session_id=session_id)
    return refresh_cost_guard(limit_usd, now=now)


def reset_guard_row(name: str, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Close a guard and forget its trips (the caller audits; used by the manual reset action)."""
    _row(name)
    row = GuardState.objects.select_for_update().get(name=name)
    before = {"state": row.state, "trip_count": row.trip_count}
    GuardState.objects.filter(pk=row.pk).update(
        state=GuardStatus.CLOSED,
        trip_count=0,
        last_trip_at=None,
        opened_at=None,
        cooldown_seconds=0,
        retry_at=None,
        last_reason="reset by staff",
        **_fresh_counters(now),
    )
    return before, {"state": GuardStatus.CLOSED, "trip_count": 0}
