"""Retention of personal data: visits and their conversation state are deleted after a set time."""

from __future__ import annotations

from django.db import transaction

from . import workflow
from .models import Visit


def purge_visits(older_than_days: int) -> int:
    """Delete visits older than the given days, with their checkpointed conversations; returns the count."""
    visits = Visit.objects.older_than(older_than_days)
    session_ids = list(visits.values_list("session_id", flat=True))
    for session_id in session_ids:
        workflow.forget(session_id)
    with transaction.atomic():
        count, _ = Visit.objects.filter(session_id__in=session_ids).delete()
    return len(session_ids) if count else 0
