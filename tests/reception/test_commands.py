"""The operator commands: kiosks, directory import, visitor export and purge."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from reception.models import Appointment, Kiosk, StaffMember, Visit

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_kiosk_prints_a_working_key_last():
    output = run("create_kiosk", "Lobby 1F", "--location", "1F sofas")
    key = output.strip().splitlines()[-1]
    kiosk = Kiosk.objects.get(name="Lobby 1F")
    assert Kiosk.objects.authenticate_key(key) == kiosk
    assert key not in kiosk.key_hash and kiosk.key_prefix == key[:8]
    with pytest.raises(CommandError, match="exists already"):
        run("create_kiosk", "Lobby 1F")


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_staff_creates_then_updates(tmp_path):
    file = write(
        tmp_path / "staff.csv",
        "name,reading,romaji,department,email\n田中 一郎,たなか いちろう,Ichiro Tanaka,営業部,tanaka@example.com\n"
        "鈴木 花子,すずき はなこ,Hanako Suzuki,開発部,suzuki@example.com\n",
    )
    assert "2 created, 0 updated" in run("import_staff", file)
    file = write(
        tmp_path / "staff2.csv",
        "name,reading,romaji,department,email\n田中 一郎,たなか いちろう,Ichiro Tanaka,経営企画部,tanaka@example.com\n",
    )
    assert "0 created, 1 updated" in run("import_staff", file)
    assert StaffMember.objects.get(email="tanaka@example.com").department == "経営企画部"


def test_import_staff_with_a_bad_row_imports_nothing_and_names_the_line(tmp_path):
    file = write(
        tmp_path / "staff.csv",
        "name,reading,romaji,department,email\n"
        "田中 一郎,たなか,Tanaka,営業部,tanaka@example.com\n"
        ",,,,\n"
        "佐藤,さとう,Sato,総務部,not-an-email\n",
    )
    with pytest.raises(CommandError) as error:
        run("import_staff", file)
    assert "line 3: name is empty" in str(error.value) and "line 4" in str(error.value)
    assert StaffMember.objects.count() == 0


def test_import_staff_reports_a_wrong_header_and_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="missing column"):
        run("import_staff", write(tmp_path / "bad.csv", "name,email\nA,a@example.com\n"))
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_staff", str(tmp_path / "nope.csv"))


def test_import_appointments(tmp_path, demo_directory):
    Appointment.objects.all().delete()
    file = write(
        tmp_path / "appointments.csv",
        "visitor_name,visitor_company,host,start,end\n"
        "山田 太郎,株式会社テスト,hanako.suzuki@example.com,2026-11-30T10:00,2026-11-30T11:00\n"
        "Jane Doe,Example Inc,Ichiro Tanaka,2026-11-30T13:00:00+09:00,2026-11-30T14:00:00+09:00\n",
    )
    assert "2 created" in run("import_appointments", file)
    jane = Appointment.objects.get(visitor_name="Jane Doe")
    assert jane.host.name == "田中 一郎"
    assert jane.start == datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # the offset given is kept
    yamada = Appointment.objects.get(visitor_name="山田 太郎")
    assert timezone.localtime(yamada.start).hour == 10  # no offset: the office's local time


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("X,Y,Nobody,2026-11-30T10:00,2026-11-30T11:00", "no single staff member"),
        ("X,Y,Ichiro Tanaka,tomorrow,2026-11-30T11:00", "ISO 8601"),
        ("X,Y,Ichiro Tanaka,2026-11-30T11:00,2026-11-30T10:00", "end must be after start"),
        (",Y,Ichiro Tanaka,2026-11-30T10:00,2026-11-30T11:00", "visitor_name is empty"),
    ],
)
def test_import_appointments_rejects_bad_rows_whole(tmp_path, demo_directory, row, problem):
    before = Appointment.objects.count()
    file = write(
        tmp_path / "a.csv",
        f"visitor_name,visitor_company,host,start,end\nA,B,Ken Sato,2026-11-30T09:00,2026-11-30T09:30\n{row}\n",
    )
    with pytest.raises(CommandError, match=problem):
        run("import_appointments", file)
    assert Appointment.objects.count() == before


def test_export_visits_json_and_csv(tmp_path, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    Visit.objects.create(
        session_id="s1",
        kiosk=kiosk,
        visitor_name="山田 太郎",
        company_name="株式会社テスト",
        purpose="打ち合わせ",
        host_name="鈴木",
        visitor_type="appointment",
        status="host_notified",
        appointment_found=True,
        host_notified=True,
    )
    Visit.objects.create(session_id="s2", visitor_name='Jane, "JD" Doe', status="collecting")
    rows = json.loads(run("export_visits", "--format", "json"))
    assert [row["session_id"] for row in rows] == ["s1", "s2"]
    assert (
        rows[0]["visitor_name"] == "山田 太郎"
        and rows[0]["appointment_found"] is True
        and rows[0]["kiosk"] == "Test lobby"
    )
    expected = {
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
    }
    assert expected <= set(rows[0])
    output = tmp_path / "visits.csv"
    call_command("export_visits", "--format", "csv", "--output", str(output), stderr=io.StringIO())
    parsed = list(csv.DictReader(output.open(encoding="utf-8")))
    assert parsed[1]["visitor_name"] == 'Jane, "JD" Doe' and parsed[0]["host_notified"] == "True"


def test_purge_visitors_removes_old_visits_and_their_conversation_state(kiosk_and_key, isolated_workflow_state):
    from reception import workflow

    kiosk, _ = kiosk_and_key
    for session_id in ("old-visit", "new-visit"):
        workflow.start(session_id, "ja", kiosk.pk)
        workflow.handle_text(session_id, "山田太郎です")
    Visit.objects.filter(session_id="old-visit").update(created_at=timezone.now() - timedelta(days=40))
    assert "Purged 1 visit(s) older than 30 day(s)" in run("purge_visitors", "--older-than", "30")
    assert list(Visit.objects.values_list("session_id", flat=True)) == ["new-visit"]
    assert workflow.snapshot("old-visit") is None
    assert workflow.snapshot("new-visit").visit["visitor_name"]
    with pytest.raises(CommandError):
        run("purge_visitors", "--older-than", "-1")


def test_seed_demo_is_idempotent_and_prints_a_pairing_link():
    first = run("seed_demo")
    assert "password (shown once)" in first and "/kiosk/pair/" in first
    second = run("seed_demo")
    assert "password" not in second and "/kiosk/pair/" in second
    assert StaffMember.objects.filter(is_reception_desk=True).count() == 1
    assert Appointment.objects.filter(start__date=timezone.localdate()).count() == 3
