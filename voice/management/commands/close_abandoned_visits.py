"""`manage.py close_abandoned_visits [--older-than-seconds N]`: close visits a crashed server left open.

The task queue runs the same every ABANDONED_VISITS_EVERY_MINUTES (voice.tasks); this is for a manual run.
"""

from django.core.management.base import BaseCommand, CommandError

from reception.retention import close_abandoned_visits
from voice.idle import abandoned_after_seconds


class Command(BaseCommand):
    help = (
        "Mark visits still collecting details with no activity for N seconds as abandoned. The default, "
        "KIOSK_IDLE_TIMEOUT_SECONDS plus the longest a reply may hold a session, never touches a live session."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than-seconds", type=float, default=None, dest="seconds")

    def handle(self, *args, seconds: float | None, **options):
        if seconds is None:
            seconds = abandoned_after_seconds()
        if seconds < 0:
            raise CommandError("--older-than-seconds must be zero or more.")
        count = close_abandoned_visits(seconds)
        self.stdout.write(f"Closed {count} abandoned visit(s) inactive for more than {seconds:g} s.")
