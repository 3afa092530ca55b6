"""`manage.py rollout_autopilot`: one autopilot step for cron (promote on green gates, demote on a trip)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from fallback.autopilot import autopilot, autopilot_idle_reason


class Command(BaseCommand):
    help = (
        "With auto_promote on: promote one stage when every promotion gate is green, or demote one stage when a "
        "guard opened during the current stage (audited as system:autopilot). Prints one line; meant for cron."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = autopilot()
        if done:
            self.stdout.write(self.style.WARNING(f"autopilot: {done}"))
        else:
            self.stdout.write(f"autopilot: no change ({autopilot_idle_reason()})")
