"""`manage.py export_visits --format json|csv`: the visitor log, to stdout or a file."""

import io
from datetime import date

from django.core.management.base import BaseCommand

from reception.directory_io import export_visits
from reception.models import Visit


class Command(BaseCommand):
    help = "Export visits (newest first) as JSON or CSV."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["json", "csv"], default="json", dest="fmt")
        parser.add_argument("--output", "-o", help="File to write; standard output when omitted.")
        parser.add_argument("--since", type=date.fromisoformat, help="Only visits on or after this date (YYYY-MM-DD).")

    def handle(self, *args, fmt: str, output: str | None, since: date | None, **options):
        visits = Visit.objects.select_related("kiosk").order_by("created_at")
        if since:
            visits = visits.filter(created_at__date__gte=since)
        if output is None:
            buffer = io.StringIO()
            export_visits(visits, buffer, fmt)
            self.stdout.write(buffer.getvalue(), ending="")
            return
        with open(output, "w", encoding="utf-8", newline="") as handle:
            count = export_visits(visits, handle, fmt)
        self.stderr.write(f"Wrote {count} visit(s) to {output}.")
