"""Metric rows past METRICS_RETENTION_DAYS are pruned; open sessions and live reservations stay whatever their age."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from metrics.models import CostBucket, CostReservation, SessionMetric, TurnMetric
from metrics.retention import prune_metrics


@pytest.mark.django_db
def test_old_rows_go_and_what_is_still_in_use_stays():
    now = timezone.now()
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    for name, at in (("old", old), ("recent", recent)):
        TurnMetric.objects.create(event_id=name, session_id=name, occurred_at=at, path="legacy")
        SessionMetric.objects.create(session_id=name, started_at=at, ended_at=at, mode="legacy")
        CostBucket.objects.create(minute=at)
        CostReservation.objects.create(session_id=f"settled-{name}", usd=1, created_at=at, expires_at=at, settled_at=at)
    SessionMetric.objects.create(session_id="still-open", started_at=old, mode="legacy")
    CostReservation.objects.create(session_id="live", usd=1, created_at=old, expires_at=now + timedelta(hours=1))

    assert prune_metrics(30) == {"turns": 1, "sessions": 1, "cost_buckets": 1, "reservations": 1}

    assert list(TurnMetric.objects.values_list("event_id", flat=True)) == ["recent"]
    assert set(SessionMetric.objects.values_list("session_id", flat=True)) == {"recent", "still-open"}
    assert CostBucket.objects.get().minute == recent
    assert set(CostReservation.objects.values_list("session_id", flat=True)) == {"settled-recent", "live"}
