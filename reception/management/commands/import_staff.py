"""`manage.py import_staff FILE.csv`: load the staff directory (header name,reading,romaji,department,email)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.history import audit_context, cli_actor
from reception.directory_io import CsvImportError, import_staff


class Command(BaseCommand):
    help = "Create or update staff members from a CSV file with header name,reading,romaji,department,email."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--reason", default="import_staff", help="Why (kept in the change history).")

    def handle(self, *args, file: Path, reason: str, **options):
        try:
            with file.open(encoding="utf-8-sig", newline="") as handle, audit_context(cli_actor(), reason):
                report = import_staff(handle)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}") from None
        except CsvImportError as error:
            raise CommandError(f"Nothing imported; fix these lines of {file}:\n{error}") from None
        self.stdout.write(f"Staff: {report.created} created, {report.updated} updated.")
