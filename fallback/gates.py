"""Promotion gates of the staged rollout (Realtime compared with Legacy over the current stage's soak) and the
optional autopilot that promotes when every gate is green and demotes when a guard trips.

The soak window runs from ``stage_entered_at`` to now. The metric gates read the sessions that ended in it
(by the path they started on) through ``metrics.stats``; with fewer than MIN_SESSIONS_PER_PATH sessions on
either path a metric gate does not pass ("not enough sessions"): no data is never a green light.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from metrics.models import SessionMetric
from metrics.stats import SLOW_TURN_MS, rate, session_stats, turn_stats
from reception.models import Visit

from .models import STAGE_ORDER, STAGE_PLAN, EmergencyState, GuardState, GuardStatus, Mode, RolloutConfig

logger = logging.getLogger(__name__)

AUTOPILOT_ACTOR = "system:autopilot"
MIN_SESSIONS_PER_PATH = 20
ERROR_RATE_MARGIN = 0.02  # Realtime may fail at most 2 points more often than Legacy
COMPLETED_MARGIN = 0.05  # Realtime may complete at most 5 points fewer visits than Legacy
COMPLETED_STATUSES = (
    Visit.Status.HOST_NOTIFIED,
    Visit.Status.SENT_TO_DESK,
    Visit.Status.DECLINED,
    Visit.Status.DELIVERY_GUIDED,
)
_EPSILON = 1e-9  # float noise in "a <= b + margin"


@dataclass(frozen=True)
class Gate:
    """One promotion condition: the values compared, the rule, whether it passed and (if not) why."""

    name: str
    passed: bool
    realtime: Any
    legacy: Any
    rule: str
    reason: str = ""
    unit: str = ""  # "%", "ms", "USD", "h" or "" (how the values are shown)

    def show(self, value: Any) -> str:
        if value is None:
            return "-"
        if self.unit == "%":
            return f"{float(value) * 100:.1f} %"
        if self.unit == "ms":
            return f"{float(value):.0f} ms"
        if self.unit == "USD":
            return f"{float(value):.4f} USD"
        if self.unit == "h":
            return f"{float(value):.1f} h"
        return str(value)

    @property
    def realtime_display(self) -> str:
        return self.show(self.realtime)

    @property
    def legacy_display(self) -> str:
        return self.show(self.legacy)

    def summary(self) -> str:
        verdict = "pass" if self.passed else f"FAIL ({self.reason})" if self.reason else "FAIL"
        return f"{self.name}: {verdict}"


def promotion_gates(now: datetime | None = None, *, config: RolloutConfig | None = None) -> list[Gate]:
    """Every gate of a promotion from the current stage (soaked, guards closed, then the four comparisons)."""
    now = now or timezone.now()
    config = config or RolloutConfig.load()
    since = config.stage_entered_at if config.stage and config.stage_entered_at else now
    return [_soak_gate(config, now), _guards_gate(), *_metric_gates(since, now)]


def gates_summary(gates: list[Gate]) -> str:
    return "; ".join(gate.summary() for gate in gates)


def _soak_gate(config: RolloutConfig, now: datetime) -> Gate:
    if not config.stage or config.stage_entered_at is None:
        return Gate("soaked", False, None, None, "a named stage", "no named stage (custom percentage)", "h")
    soak = STAGE_PLAN[config.stage][1]
    hours = (now - config.stage_entered_at).total_seconds() / 3600
    rule = f">= {soak.total_seconds() / 3600:.0f} h in stage {config.stage}"
    if now - config.stage_entered_at < soak:
        reason = f"stage {config.stage} has soaked {hours:.1f} h of {soak.total_seconds() / 3600:.0f} h"
        return Gate("soaked", False, hours, None, rule, reason, "h")
    return Gate("soaked", True, hours, None, rule, unit="h")


def _guards_gate() -> Gate:
    not_closed = list(GuardState.objects.exclude(state=GuardStatus.CLOSED).values_list("name", flat=True))
    value = ", ".join(not_closed) or "all closed"
    reason = f"guards not closed: {value}" if not_closed else ""
    return Gate("guards closed", not not_closed, value, None, "every guard closed", reason)


def _completed(path: str, since: datetime, now: datetime) -> tuple[int, Decimal]:
    """Visits completed by the sessions that started on ``path`` and ended in the window, and those sessions' cost."""
    sessions = SessionMetric.objects.filter(mode=path, ended_at__gt=since, ended_at__lte=now)
    done = Visit.objects.filter(session_id__in=sessions.values("session_id"), status__in=COMPLETED_STATUSES).count()
    cost = sessions.aggregate(c=Sum("cost_usd"))["c"] or Decimal(0)
    return done, cost


def _metric_gates(since: datetime, now: datetime) -> list[Gate]:
    sessions, turns = session_stats(since, now), turn_stats(since, now)
    rt, lg = sessions[Mode.REALTIME], sessions[Mode.LEGACY]
    done_rt, cost_rt = _completed(Mode.REALTIME, since, now)
    done_lg, cost_lg = _completed(Mode.LEGACY, since, now)
    completed_rt, completed_lg = rate(done_rt, rt["ended"]), rate(done_lg, lg["ended"])
    per_visit_rt = cost_rt / done_rt if done_rt else None
    per_visit_lg = cost_lg / done_lg if done_lg else None
    ttfa_rt, ttfa_lg = turns[Mode.REALTIME]["ttfa_p95_ms"], turns[Mode.LEGACY]["ttfa_p95_ms"]
    max_cost = Decimal(str(settings.REALTIME_MAX_COST_PER_VISIT))
    few = min(rt["ended"], lg["ended"]) < MIN_SESSIONS_PER_PATH
    short = f"not enough sessions (Realtime {rt['ended']}, Legacy {lg['ended']}; at least {MIN_SESSIONS_PER_PATH} each)"

    def gate(name: str, ok: bool | None, value_rt: Any, value_lg: Any, rule: str, unit: str, why: str) -> Gate:
        if few:
            return Gate(name, False, value_rt, value_lg, rule, short, unit)
        if ok is None:
            return Gate(name, False, value_rt, value_lg, rule, why, unit)
        return Gate(name, ok, value_rt, value_lg, rule, "" if ok else why, unit)

    def known(*values: Any) -> bool:
        return all(v is not None for v in values)

    err_rt, err_lg = rt["error_rate"], lg["error_rate"]
    return [
        gate(
            "error rate",
            err_rt - err_lg <= ERROR_RATE_MARGIN + _EPSILON if known(err_rt, err_lg) else None,
            err_rt,
            err_lg,
            f"Realtime <= Legacy + {ERROR_RATE_MARGIN * 100:.0f} points",
            "%",
            "Realtime fails more often than Legacy allows" if known(err_rt, err_lg) else "no sessions",
        ),
        gate(
            "p95 time to first audio",
            (ttfa_rt <= ttfa_lg or ttfa_rt <= SLOW_TURN_MS) if known(ttfa_rt, ttfa_lg) else None,
            ttfa_rt,
            ttfa_lg,
            f"Realtime <= Legacy, or <= {SLOW_TURN_MS} ms",
            "ms",
            "Realtime is slower than Legacy and than the limit" if known(ttfa_rt, ttfa_lg) else "no timed turns",
        ),
        gate(
            "completed visits",
            completed_lg - completed_rt <= COMPLETED_MARGIN + _EPSILON if known(completed_rt, completed_lg) else None,
            completed_rt,
            completed_lg,
            f"Realtime >= Legacy - {COMPLETED_MARGIN * 100:.0f} points",
            "%",
            "Realtime completes fewer visits than Legacy allows"
            if known(completed_rt, completed_lg)
            else "no sessions",
        ),
        gate(
            "cost per completed visit",
            per_visit_rt <= max_cost if per_visit_rt is not None else None,
            per_visit_rt,
            per_visit_lg,
            f"Realtime <= {max_cost} USD (REALTIME_MAX_COST_PER_VISIT)",
            "USD",
            "above the limit" if per_visit_rt is not None else "no completed Realtime visits",
        ),
    ]


# --- autopilot ---------------------------------------------------------------------------------------------


def _next_stage(stage: str) -> str | None:
    if stage not in STAGE_ORDER or stage == STAGE_ORDER[-1]:
        return None
    return STAGE_ORDER[STAGE_ORDER.index(stage) + 1]


def _previous_stage(stage: str) -> str | None:
    if stage not in STAGE_ORDER or stage == STAGE_ORDER[0]:
        return None
    return STAGE_ORDER[STAGE_ORDER.index(stage) - 1]


def _tripped_since_stage(config: RolloutConfig) -> list[GuardState]:
    """Guards open now that opened after the stage was entered (each trip demotes once, not on every run)."""
    guards = GuardState.objects.filter(state=GuardStatus.OPEN)
    if config.stage_entered_at is not None:
        guards = guards.filter(opened_at__gt=config.stage_entered_at)
    return list(guards)


def _demote(config: RolloutConfig, now: datetime) -> str | None:
    """Demote one stage (audited) if a guard opened during the current stage and a lower stage exists."""
    from .emergency import apply_action  # emergency imports this module

    tripped = _tripped_since_stage(config)
    lower = _previous_stage(config.stage)
    if not tripped or lower is None:
        return None
    opened = ", ".join(f"{g.name} ({g.last_reason})" if g.last_reason else g.name for g in tripped)
    reason = f"guard open: {opened}"[:500]
    apply_action("set_stage", actor=AUTOPILOT_ACTOR, reason=reason, now=now, stage=lower)
    return f"demoted {config.stage} -> {lower}: {reason}"


def autopilot(now: datetime | None = None) -> str | None:
    """With auto_promote on: demote one stage when a guard opened during this stage, else promote one stage
    when every gate is green. Returns what it did (one line) or None. Every change is an audited set_stage.
    """
    from .emergency import ActionError, apply_action  # emergency imports this module

    now = now or timezone.now()
    config = RolloutConfig.load()
    if not config.auto_promote or not config.stage:
        return None
    if _tripped_since_stage(config):
        return _demote(config, now)
    higher = _next_stage(config.stage)
    if higher is None or EmergencyState.load().active:
        return None
    gates = promotion_gates(now, config=config)
    if not all(gate.passed for gate in gates):
        return None
    reason = f"every gate green: {gates_summary(gates)}"[:500]
    try:
        apply_action("set_stage", actor=AUTOPILOT_ACTOR, reason=reason, now=now, stage=higher)
    except ActionError as exc:  # the state moved between our read and the locked re-check
        logger.warning("autopilot promotion to %s refused: %s", higher, exc)
        return None
    return f"promoted {config.stage} -> {higher}: {reason}"


def autopilot_idle_reason(now: datetime | None = None) -> str:
    """Why autopilot changed nothing (for the command's one line)."""
    config = RolloutConfig.load()
    if not config.auto_promote:
        return "auto_promote is off"
    if not config.stage:
        return "no named stage (custom percentage)"
    if _tripped_since_stage(config):
        return f"guard open, stage {config.stage} is the lowest"
    if _next_stage(config.stage) is None:
        return f"stage {config.stage} is the last"
    if EmergencyState.load().active:
        return "emergency active"
    by_reason: dict[str, list[str]] = {}
    for gate in promotion_gates(now, config=config):
        if not gate.passed:
            by_reason.setdefault(gate.reason, []).append(gate.name)
    waiting = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())
    return f"stage {config.stage}; waiting on {waiting}" if waiting else f"stage {config.stage}"


def demote_on_trip(name: str, now: datetime) -> None:
    """Called when a guard has just opened: with auto_promote on, demote one stage at once (never promotes,
    never raises: the guard is open either way and routing already keeps new sessions off Realtime)."""
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's transaction usable
            config = RolloutConfig.load()
            done = _demote(config, now) if config.auto_promote and config.stage else None
    except Exception:
        logger.exception("autopilot demotion after guard %s tripped failed", name)
        return
    if done:
        logger.warning("autopilot after guard %s tripped: %s", name, done)
