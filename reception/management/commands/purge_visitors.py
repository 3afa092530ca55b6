"""`manage.py purge_visitors --older-than DAYS`: delete visitor records past their retention."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.history import cli_actor
from reception.retention import purge_visits


class Command(BaseCommand):
    help = "Delete visits (and their conversation state) older than DAYS (default VISITOR_RETENTION_DAYS)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, dest="days")
        parser.add_argument("--reason", default="retention", help="Why (kept in the audit trail).")

    def handle(self, *args, days: int | None, reason: str, **options):
        days = settings.VISITOR_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--older-than must be zero or more days.")
        count = purge_visits(days, actor=cli_actor(), reason=reason)
        self.stdout.write(f"Purged {count} visit(s) older than {days} day(s).")
