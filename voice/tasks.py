"""Voice's background task (huey, `manage.py run_huey`): every ABANDONED_VISITS_EVERY_MINUTES, visits a crashed
server left open are closed as abandoned (the same rule as `manage.py close_abandoned_visits`)."""

from __future__ import annotations

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from reception.retention import close_abandoned_visits

from .idle import abandoned_after_seconds


@db_periodic_task(crontab(minute=f"*/{settings.ABANDONED_VISITS_EVERY_MINUTES}"))
def close_abandoned_sessions() -> int:
    """Close visits inactive for longer than KIOSK_IDLE_TIMEOUT_SECONDS plus the longest a reply may take."""
    return close_abandoned_visits(abandoned_after_seconds())
