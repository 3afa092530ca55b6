"""The rollout's background task (huey, `manage.py run_huey`): one autopilot step every
ROLLOUT_AUTOPILOT_EVERY_MINUTES (it does nothing unless "auto promote" is on)."""

from __future__ import annotations

import logging

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from .autopilot import autopilot

logger = logging.getLogger(__name__)


@db_periodic_task(crontab(minute=f"*/{settings.ROLLOUT_AUTOPILOT_EVERY_MINUTES}"))
def rollout_autopilot_step() -> str | None:
    """Promote one stage on green gates or demote on a trip (audited as system:autopilot); what it did, if any."""
    done = autopilot()
    if done:
        logger.warning("autopilot: %s", done)
    return done
