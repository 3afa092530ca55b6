"""Windows, rates and percentiles over the recorded turns and sessions (one definition for every view).

Percentiles are nearest-rank: the smallest value with at least q % of the sample at or below it
(``sorted(xs)[ceil(q/100 * n) - 1]``); always a value that was observed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from .models import Mode, Outcome, SessionMetric, TurnMetric
from .sources import sources

WINDOWS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
# Cost chart buckets per window: 5 minutes over an hour, 1 hour over a day, 6 hours over a week.
BUCKETS: dict[str, timedelta] = {"hour": timedelta(minutes=5), "day": timedelta(hours=1), "week": timedelta(hours=6)}
PATHS = (Mode.REALTIME, Mode.LEGACY)
# A completed visit: the reception reached its end (the host told, or the visitor handed to the desk).
COMPLETED_VISIT = Q(outcome__in=[Outcome.COMPLETED, Outcome.HANDED_OFF])
SLOW_TURN_MS = 2000  # a turn slower than this to its first audio is slow (the latency guard counts it a failure)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (0 < q <= 100) of ``values``; None for an empty sample."""
    if not 0 < q <= 100:
        raise ValueError(f"A percentile is in (0, 100], not {q}.")
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1])


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def window_of(name: str) -> timedelta:
    if name not in WINDOWS:
        raise ValueError(f"Unknown window {name!r}; expected one of {', '.join(WINDOWS)}.")
    return WINDOWS[name]


def session_stats(since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    """Per starting path: sessions started, ended, completed visits, errors, fell back, success rate (the
    completed-visit rate) and error rate."""
    result = {}
    for path in PATHS:
        started = SessionMetric.objects.filter(mode=path, started_at__gt=since, started_at__lte=until)
        ended = SessionMetric.objects.filter(mode=path, ended_at__gt=since, ended_at__lte=until)
        counts = ended.aggregate(
            ended=Count("id"),
            completed=Count("id", filter=COMPLETED_VISIT),
            errors=Count("id", filter=Q(outcome=Outcome.ERROR)),
            fell_back=Count("id", filter=Q(fallbacks__gt=0)),
        )
        result[path] = {
            "started": started.count(),
            **counts,
            "success_rate": rate(counts["completed"], counts["ended"]),
            "error_rate": rate(counts["errors"], counts["ended"]),
        }
    return result


def quality_stats(since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    """Per starting path, over the sessions that ended in the window: visits handed to the desk, mean visitor
    turns and seconds to a completed visit, re-asks per visitor turn, corrections, and the mean one-tap rating
    with the number of ratings. (The completed-visit rate is `session_stats`' success rate.)"""
    result = {}
    done = COMPLETED_VISIT
    for path in PATHS:
        ended = SessionMetric.objects.filter(mode=path, ended_at__gt=since, ended_at__lte=until)
        row = ended.aggregate(
            handed_off=Count("id", filter=Q(outcome=Outcome.HANDED_OFF)),
            turns=Sum("visitor_turns"),
            reasks=Sum("reasks"),
            corrections=Sum("corrections"),
            turns_to_complete=Avg("visitor_turns", filter=done),
            seconds_to_complete=Avg("seconds_to_complete", filter=done),
            rated=Count("satisfaction"),
            satisfaction=Avg("satisfaction"),
        )
        result[path] = {
            "handed_off": row["handed_off"],
            "mean_turns_to_complete": row["turns_to_complete"],
            "mean_seconds_to_complete": row["seconds_to_complete"],
            "reasks": row["reasks"] or 0,
            "reask_rate": rate(row["reasks"] or 0, row["turns"] or 0),
            "corrections": row["corrections"] or 0,
            "rated": row["rated"],
            "mean_satisfaction": row["satisfaction"],
        }
    return result


def turn_stats(since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    """Per path: turns, failed turns, cost, and p50/p95 of the three latencies (nearest rank)."""
    result = {}
    for path in PATHS:
        turns = TurnMetric.objects.filter(path=path, occurred_at__gt=since, occurred_at__lte=until)
        rows = list(turns.values_list("ttfa_ms", "upstream_ms", "server_ms", "ok", "cost_usd"))
        ttfa = [r[0] for r in rows if r[0] is not None]
        upstream = [r[1] for r in rows if r[1] is not None]
        server = [r[2] for r in rows if r[2] is not None]
        failed = sum(1 for r in rows if not r[3])
        result[path] = {
            "turns": len(rows),
            "failed_turns": failed,
            "turn_error_rate": rate(failed, len(rows)),
            "cost_usd": sum((r[4] for r in rows if r[4] is not None), Decimal(0)),
            "ttfa_p50_ms": percentile(ttfa, 50),
            "ttfa_p95_ms": percentile(ttfa, 95),
            "upstream_p50_ms": percentile(upstream, 50),
            "upstream_p95_ms": percentile(upstream, 95),
            "server_p50_ms": percentile(server, 50),
            "server_p95_ms": percentile(server, 95),
            "slow_turn_rate": rate(sum(1 for v in ttfa if v > SLOW_TURN_MS), len(ttfa)),
        }
    return result


def cost_series(window: str, now: datetime) -> list[dict[str, Any]]:
    """Cost per bucket and path over the window (oldest first), from the recorded turns."""
    step = BUCKETS[window]
    start = now - WINDOWS[window]
    count = math.ceil(WINDOWS[window] / step)
    series = [{"start": start + i * step, "realtime": Decimal(0), "legacy": Decimal(0)} for i in range(count)]
    turns = TurnMetric.objects.filter(occurred_at__gt=start, occurred_at__lte=now, cost_usd__isnull=False)
    for at, path, cost in turns.values_list("occurred_at", "path", "cost_usd"):
        index = min(int((at - start) / step), count - 1)
        series[index][path] += cost
    return series


def error_rate_last_hour(*, now: datetime | None = None) -> tuple[float, int]:
    """The worse of the failed-session and failed-turn rates whose sample reaches ALERT_MIN_SAMPLE,
    and the size of that sample; (0.0, largest sample) when neither does."""
    now = now or timezone.now()
    since = now - timedelta(hours=1)
    sessions = SessionMetric.objects.filter(ended_at__gt=since, ended_at__lte=now).aggregate(
        n=Count("id"), bad=Count("id", filter=Q(outcome=Outcome.ERROR))
    )
    turns = TurnMetric.objects.filter(occurred_at__gt=since, occurred_at__lte=now).aggregate(
        n=Count("id"), bad=Count("id", filter=Q(ok=False))
    )
    eligible = [(c["bad"] / c["n"], c["n"]) for c in (sessions, turns) if c["n"] >= settings.ALERT_MIN_SAMPLE]
    if not eligible:
        return 0.0, max(sessions["n"], turns["n"])
    return max(eligible)


def summary(window: str = "hour", *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard and the metrics endpoint show for one window, Realtime and Legacy side by side."""
    now = now or timezone.now()
    since = now - window_of(window)
    sessions, turns, quality = session_stats(since, now), turn_stats(since, now), quality_stats(since, now)
    total_cost = TurnMetric.objects.filter(occurred_at__gt=since, occurred_at__lte=now).aggregate(c=Sum("cost_usd"))
    return {
        "window": window,
        "since": since,
        "until": now,
        "percentile_method": "nearest-rank",
        "paths": {path: {**sessions[path], **turns[path], **quality[path]} for path in PATHS},
        "fallbacks_by_reason": sources.fallbacks_by_reason(since, now),
        "cost_usd": total_cost["c"] or Decimal(0),
    }
