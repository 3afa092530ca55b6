"""Metrics' background task (huey, `manage.py run_huey`): the daily pruning of old metric rows."""

from __future__ import annotations

import logging

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from .retention import prune_metrics

logger = logging.getLogger(__name__)


@db_periodic_task(crontab(minute="30", hour=str(settings.DAILY_PURGE_HOUR)))
def prune_old_metrics() -> dict[str, int]:
    """Daily: delete metric rows older than METRICS_RETENTION_DAYS."""
    pruned = prune_metrics(settings.METRICS_RETENTION_DAYS)
    logger.info("metrics older than %d days pruned: %s", settings.METRICS_RETENTION_DAYS, pruned)
    return pruned
