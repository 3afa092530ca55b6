"""Reception's background tasks (huey, run by `manage.py run_huey`): host notifications with their retries and
the desk fallback, and the daily purge of visitor records past VISITOR_RETENTION_DAYS."""

from __future__ import annotations

import logging

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from .models import HostNotification, StaffMember, Visit
from .notifications import deliver, first_notification, next_step, retry_delay
from .retention import purge_visits

logger = logging.getLogger(__name__)


@db_task()
def deliver_notification(row_id: int) -> None:
    """One attempt at the notification; queue the retry (after its back-off) or, when a host's failed, the desk's."""
    row = deliver(row_id)
    if row is None:
        return
    if row.status == HostNotification.Status.PENDING:
        delay = retry_delay(row)
        if delay > 0:
            deliver_notification.schedule((row.pk,), delay=delay)
        else:
            deliver_notification(row.pk)
        return
    desk_row = next_step(row)
    if desk_row is not None:
        deliver_notification(desk_row.pk)


def notify_in_background(visit: Visit, host: StaffMember | None, reason: str) -> HostNotification | None:
    """Queue the notification of the host (or of the desk) about the visit and return at once with its PENDING
    row; None when nobody can be sent to. A failure of the queue itself is a FAILED row, never a crash."""
    row = first_notification(visit, host, reason)
    if row is None:
        return None
    try:
        deliver_notification(row.pk)
    except Exception:  # the queue's storage (Redis, the SQLite file) is down: say so, do not break the visit
        logger.exception("notification %s could not be queued", row.pk)
        row.status, row.last_error = HostNotification.Status.FAILED, "task queue unavailable"
        row.save(update_fields=["status", "last_error"])
        return None
    return row


@db_periodic_task(crontab(minute="0", hour=str(settings.DAILY_PURGE_HOUR)))
def purge_old_visits() -> int:
    """Daily: delete visits (and their conversations) older than VISITOR_RETENTION_DAYS."""
    return purge_visits(settings.VISITOR_RETENTION_DAYS)
