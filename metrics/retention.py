"""Retention of metric rows: turns, sessions, per-minute cost buckets and lapsed cost reservations older than
METRICS_RETENTION_DAYS are deleted (daily, by `metrics.tasks`). Prices, alerts and API tokens are kept."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import CostBucket, CostReservation, SessionMetric, TurnMetric


def prune_metrics(older_than_days: int) -> dict[str, int]:
    """Delete metric rows older than the given days; returns the count deleted per kind.

    A session still open (no `ended_at`) is kept whatever its age, and so is a reservation neither settled nor
    lapsed: the cost limit still counts it.
    """
    cutoff = timezone.now() - timedelta(days=older_than_days)
    lapsed = Q(settled_at__lt=cutoff) | Q(settled_at__isnull=True, expires_at__lt=cutoff)
    with transaction.atomic():
        return {
            "turns": TurnMetric.objects.filter(occurred_at__lt=cutoff).delete()[0],
            "sessions": SessionMetric.objects.filter(ended_at__lt=cutoff).delete()[0],
            "cost_buckets": CostBucket.objects.filter(minute__lt=cutoff).delete()[0],
            "reservations": CostReservation.objects.filter(created_at__lt=cutoff).filter(lapsed).delete()[0],
        }
