"""Promotion gates of the staged rollout: Realtime compared with Legacy over the current stage's soak.

The soak window runs from ``stage_entered_at`` to now. The metric gates read the sessions that ended in it
(by the path they started on) through ``metrics.stats``; with fewer than MIN_SESSIONS_PER_PATH sessions on
either path a metric gate does not pass ("not enough sessions"): no data is never a green light. The
satisfaction gate also needs PROMOTION_MIN_RATINGS one-tap ratings on each path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from metrics.models import Mode, SessionMetric
from metrics.stats import SLOW_TURN_MS, quality_stats, rate, session_stats, turn_stats
from reception.models import Visit

from .models import STAGE_PLAN, GuardState, GuardStatus, RolloutConfig

MIN_SESSIONS_PER_PATH = 20
ERROR_RATE_MARGIN = 0.02  # Realtime may fail at most 2 points more often than Legacy
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
    unit: str = ""  # "%", "ms", "USD", "h", "/3" (a mean rating) or "" (how the values are shown)

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
        if self.unit == "/3":
            return f"{float(value):.2f} / 3"
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


@dataclass(frozen=True)
class _Soak:
    """Realtime and Legacy side by side over the soak window, as the metric gates compare them."""

    err_rt: float | None
    err_lg: float | None
    ttfa_rt: float | None
    ttfa_lg: float | None
    completed_rt: float | None
    completed_lg: float | None
    per_visit_rt: Decimal | None
    per_visit_lg: Decimal | None
    satisfaction_rt: float | None
    satisfaction_lg: float | None
    rated: int  # ratings on the path with fewer
    too_few: str  # why no metric gate can pass yet ("" once both paths have enough sessions)

    def gate(self, name: str, ok: bool | None, value_rt: Any, value_lg: Any, rule: str, unit: str, why: str) -> Gate:
        """A gate that fails while too few sessions ended, or (with ``why``) when its values are unknown."""
        if self.too_few:
            return Gate(name, False, value_rt, value_lg, rule, self.too_few, unit)
        if ok is None:
            return Gate(name, False, value_rt, value_lg, rule, why, unit)
        return Gate(name, ok, value_rt, value_lg, rule, "" if ok else why, unit)


def _soak(since: datetime, now: datetime) -> _Soak:
    sessions, turns, quality = session_stats(since, now), turn_stats(since, now), quality_stats(since, now)
    rt, lg = sessions[Mode.REALTIME], sessions[Mode.LEGACY]
    done_rt, cost_rt = _completed(Mode.REALTIME, since, now)
    done_lg, cost_lg = _completed(Mode.LEGACY, since, now)
    few = min(rt["ended"], lg["ended"]) < MIN_SESSIONS_PER_PATH
    short = f"not enough sessions (Realtime {rt['ended']}, Legacy {lg['ended']}; at least {MIN_SESSIONS_PER_PATH} each)"
    return _Soak(
        err_rt=rt["error_rate"],
        err_lg=lg["error_rate"],
        ttfa_rt=turns[Mode.REALTIME]["ttfa_p95_ms"],
        ttfa_lg=turns[Mode.LEGACY]["ttfa_p95_ms"],
        completed_rt=rate(done_rt, rt["ended"]),
        completed_lg=rate(done_lg, lg["ended"]),
        per_visit_rt=cost_rt / done_rt if done_rt else None,
        per_visit_lg=cost_lg / done_lg if done_lg else None,
        satisfaction_rt=quality[Mode.REALTIME]["mean_satisfaction"],
        satisfaction_lg=quality[Mode.LEGACY]["mean_satisfaction"],
        rated=min(quality[Mode.REALTIME]["rated"], quality[Mode.LEGACY]["rated"]),
        too_few=short if few else "",
    )


def _known(*values: Any) -> bool:
    return all(v is not None for v in values)


def _metric_gates(since: datetime, now: datetime) -> list[Gate]:
    soak = _soak(since, now)
    gate = soak.gate
    err_rt, err_lg, ttfa_rt, ttfa_lg = soak.err_rt, soak.err_lg, soak.ttfa_rt, soak.ttfa_lg
    completed_rt, completed_lg, per_visit_rt, per_visit_lg = (
        soak.completed_rt,
        soak.completed_lg,
        soak.per_visit_rt,
        soak.per_visit_lg,
    )
    max_cost = Decimal(str(settings.REALTIME_MAX_COST_PER_VISIT))
    margin = settings.PROMOTION_COMPLETED_MARGIN
    known = _known
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
            completed_lg - completed_rt <= margin + _EPSILON if known(completed_rt, completed_lg) else None,
            completed_rt,
            completed_lg,
            f"Realtime >= Legacy - {margin * 100:.0f} points (PROMOTION_COMPLETED_MARGIN)",
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
        _satisfaction_gate(soak),
    ]


def _satisfaction_gate(soak: _Soak) -> Gate:
    """The visitors' one-tap rating (1-3): Realtime no lower than Legacy less the margin, once rated enough."""
    margin, least = settings.PROMOTION_SATISFACTION_MARGIN, settings.PROMOTION_MIN_RATINGS
    rt, lg = soak.satisfaction_rt, soak.satisfaction_lg
    rule = f"Realtime >= Legacy - {margin:g} (PROMOTION_SATISFACTION_MARGIN), {least}+ ratings each"
    if soak.rated < least or not _known(rt, lg):
        return soak.gate("satisfaction", None, rt, lg, rule, "/3", f"not enough ratings (at least {least} each)")
    ok = lg - rt <= margin + _EPSILON
    return soak.gate("satisfaction", ok, rt, lg, rule, "/3", "visitors rate Realtime lower than Legacy allows")
