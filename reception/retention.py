"""Retention of personal data: visits and their conversation state are deleted after a set time, and
visits left unfinished by a server that went away are closed as abandoned."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import workflow
from .models import Visit
from .signals import visits_purged


def purge_visits(older_than_days: int, *, actor: str = "system:retention", reason: str = "retention") -> int:
    """Delete visits older than the given days, with their checkpointed conversations; returns the count.

    Each run announces ``signals.visits_purged`` (who, why, how many) in the same transaction as the deletion;
    the rollout's audit trail records it.
    """
    visits = Visit.objects.older_than(older_than_days)
    session_ids = list(visits.values_list("session_id", flat=True))
    for session_id in session_ids:
        workflow.forget(session_id)
    with transaction.atomic():
        count, _ = Visit.objects.filter(session_id__in=session_ids).delete()
        purged = len(session_ids) if count else 0
        visits_purged.send(sender=Visit, actor=actor, reason=reason, purged=purged, older_than_days=older_than_days)
    return purged


def close_abandoned_visits(older_than_seconds: float) -> int:
    """Mark unfinished visits untouched for this long as abandoned; returns how many were closed.

    Plain Python for cron, a systemd timer or a task queue. Only visits the visitor gave something in are
    closed: one with nothing collected may be the open session of a kiosk still waiting for its visitor.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    given = Q(visitor_name__gt="") | Q(company_name__gt="") | Q(purpose__gt="") | Q(host_name__gt="")
    stale = (
        Visit.objects.unfinished()
        .filter(updated_at__lt=cutoff)
        .filter(given | ~Q(visitor_type=Visit.VisitorType.UNKNOWN))
    )
    session_ids = list(stale.values_list("session_id", flat=True))
    for session_id in session_ids:
        workflow.end(session_id, "inactive")
    return Visit.objects.filter(session_id__in=session_ids, status=Visit.Status.ABANDONED).count()
