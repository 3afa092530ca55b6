"""`manage.py import_appointments FILE.csv`: load appointments (header visitor_name,visitor_company,host,start,end)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.history import audit_context, cli_actor
from reception.directory_io import CsvImportError, import_appointments


class Command(BaseCommand):
    help = (
        "Create appointments from a CSV file with header visitor_name,visitor_company,host,start,end "
        "(an optional location column names the meeting room). host is a staff e-mail, name, reading or romaji; "
        "times are ISO 8601."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--reason", default="import_appointments", help="Why (kept in the change history).")

    def handle(self, *args, file: Path, reason: str, **options):
        try:
            with file.open(encoding="utf-8-sig", newline="") as handle, audit_context(cli_actor(), reason):
                report = import_appointments(handle)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}") from None
        except CsvImportError as error:
            raise CommandError(f"Nothing imported; fix these lines of {file}:\n{error}") from None
        self.stdout.write(f"Appointments: {report.created} created.")
