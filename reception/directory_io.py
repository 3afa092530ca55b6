"""CSV import of the staff directory and appointments, and export of the visitor log.

Imports are all-or-nothing: every row is checked first, and one bad row imports nothing and
names its line, so a company's export can be fixed and loaded again without half a directory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.history import bulk_create_audited

from .models import Appointment, StaffMember, Visit

STAFF_COLUMNS = ("name", "reading", "romaji", "department", "email")
APPOINTMENT_COLUMNS = ("visitor_name", "visitor_company", "host", "start", "end")
EXPORT_COLUMNS = (
    "session_id",
    "visitor_name",
    "company_name",
    "purpose",
    "host_name",
    "visitor_type",
    "status",
    "appointment_found",
    "host_notified",
    "created_at",
)


class CsvImportError(Exception):
    """The file cannot be imported; `problems` lists each bad line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    problems: list[str] = field(default_factory=list)


def _rows(handle: IO[str], columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(handle)
    missing = [column for column in columns if column not in (reader.fieldnames or [])]
    if missing:
        raise CsvImportError([f"header: missing column(s) {', '.join(missing)}; expected {','.join(columns)}"])
    for row in reader:
        yield reader.line_num, {key: (value or "").strip() for key, value in row.items() if key}


def import_staff(handle: IO[str]) -> ImportReport:
    """Create or update staff members (matched by e-mail, else by name) from a CSV file."""
    report, members = ImportReport(), []
    for line, row in _rows(handle, STAFF_COLUMNS):
        if not row["name"]:
            report.problems.append(f"line {line}: name is empty")
            continue
        if row["email"]:
            try:
                validate_email(row["email"])
            except ValidationError:
                report.problems.append(f"line {line}: {row['email']!r} is not an e-mail address")
                continue
        members.append({column: row[column] for column in STAFF_COLUMNS})
    if report.problems:
        raise CsvImportError(report.problems)
    with transaction.atomic():
        for values in members:
            lookup = {"email": values["email"]} if values["email"] else {"name": values["name"], "email": ""}
            _member, created = StaffMember.objects.update_or_create(**lookup, defaults=values)
            report.created += created
            report.updated += not created
    return report


def find_host(reference: str) -> StaffMember | None:
    """The one staff member an import file means by e-mail, name, reading or romaji; None if none or several."""
    matches = StaffMember.objects.filter(
        Q(email__iexact=reference) | Q(name=reference) | Q(reading=reference) | Q(romaji__iexact=reference)
    )
    return matches.get() if matches.count() == 1 else None


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def import_appointments(handle: IO[str]) -> ImportReport:
    """Create appointments from a CSV file; times are ISO 8601 (local time when no offset is given)."""
    report, appointments = ImportReport(), []
    for line, row in _rows(handle, APPOINTMENT_COLUMNS):
        host = find_host(row["host"])
        if not row["visitor_name"]:
            report.problems.append(f"line {line}: visitor_name is empty")
        elif host is None:
            report.problems.append(f"line {line}: no single staff member matches host {row['host']!r}")
        else:
            try:
                start, end = _parse_time(row["start"]), _parse_time(row["end"])
            except ValueError:
                report.problems.append(f"line {line}: start and end must be ISO 8601 times, e.g. 2026-11-29T10:00")
                continue
            if end <= start:
                report.problems.append(f"line {line}: end must be after start")
                continue
            appointments.append(
                Appointment(
                    visitor_name=row["visitor_name"],
                    visitor_company=row["visitor_company"],
                    host=host,
                    start=start,
                    end=end,
                    location=row.get("location", ""),
                )
            )
    if report.problems:
        raise CsvImportError(report.problems)
    bulk_create_audited(appointments, Appointment)
    report.created = len(appointments)
    return report


def visit_records(visits: Iterable[Visit]) -> Iterator[dict[str, object]]:
    """The export's record of each visit: the EXPORT_COLUMNS plus kiosk and language."""
    for visit in visits:
        record = {column: getattr(visit, column) for column in EXPORT_COLUMNS}
        record["created_at"] = visit.created_at.isoformat()
        record["kiosk"] = visit.kiosk.name if visit.kiosk else ""
        record["language"] = visit.language
        yield record


def export_visits(visits: Iterable[Visit], output: IO[str], fmt: str) -> int:
    """Write the visitor log as JSON (a list) or CSV; returns the number of visits written."""
    records = list(visit_records(visits))
    if fmt == "json":
        json.dump(records, output, ensure_ascii=False, indent=2)
        output.write("\n")
    else:
        writer = csv.DictWriter(output, fieldnames=[*EXPORT_COLUMNS, "kiosk", "language"])
        writer.writeheader()
        writer.writerows(records)
    return len(records)
