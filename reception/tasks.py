"""Reception's background tasks (huey, run by `manage.py run_huey`): host notifications with their retries and
the desk fallback (`notifications.deliver_notification`), and the daily purge of visitor records past
VISITOR_RETENTION_DAYS."""

from __future__ import annotations

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from .notifications import deliver_notification, notify_in_background
from .retention import purge_visits

# The notification task lives with the notifications (the conversation queues it; retention, imported here, leads
# back to the conversation): named here so `run_huey`'s discovery of `tasks` modules finds every reception task.
__all__ = ["deliver_notification", "notify_in_background", "purge_old_visits"]


@db_periodic_task(crontab(minute="0", hour=str(settings.DAILY_PURGE_HOUR)))
def purge_old_visits() -> int:
    """Daily: delete visits (and their conversations) older than VISITOR_RETENTION_DAYS."""
    return purge_visits(settings.VISITOR_RETENTION_DAYS)
