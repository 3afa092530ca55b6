"""The audit of every change: who, when, why, before and after for kiosks, staff, appointments, API tokens,
prices and purges; API tokens that expire and remember when they were last used."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from fallback.models import AuditEntry
from metrics.models import ApiToken, ModelPrice
from reception.models import Appointment, Kiosk, StaffMember, Visit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def os_user(monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "alice")


@pytest.fixture
def boss(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"  # reasons are written in the staff member's language
    return user


@pytest.fixture
def host(db) -> StaffMember:
    return StaffMember.objects.create(name="鈴木 花子", reading="すずき はなこ", email="suzuki@example.com")


def changes(record) -> dict[str, tuple]:
    """What a history record changed: field -> (before, after)."""
    return {c.field: (c.old, c.new) for c in record.diff_against(record.prev_record).changes}


def test_kiosk_change_in_the_admin_keeps_who_why_before_and_after(client, boss, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    url = reverse("admin:reception_kiosk_change", args=[kiosk.pk])
    form = {
        "name": kiosk.name,
        "location": "3F lobby",
        "is_active": "on",
        "pairings-TOTAL_FORMS": "0",
        "pairings-INITIAL_FORMS": "0",
    }
    refused = client.post(url, form)
    assert refused.status_code == 200 and "change_reason" in refused.context["adminform"].form.errors

    response = client.post(url, {**form, "change_reason": "moved upstairs"})

    assert response.status_code == 302
    record = kiosk.history.latest()
    assert (record.history_type, record.history_user, record.history_actor) == ("~", boss, "user:boss")
    assert record.history_change_reason == "moved upstairs"
    assert changes(record) == {"location": ("2F lobby", "3F lobby")}
    assert "key_hash" not in {field.name for field in record._meta.fields}
    assert "moved upstairs" in client.get(reverse("admin:reception_kiosk_history", args=[kiosk.pk])).content.decode()


def test_a_new_kiosk_key_from_the_admin_is_in_the_history(client, boss, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    old_prefix = kiosk.key_prefix
    client.post(
        reverse("admin:reception_kiosk_changelist"), {"action": "issue_new_key", "_selected_action": [kiosk.pk]}
    )
    record = kiosk.history.latest()
    assert (record.history_user, record.history_change_reason) == (boss, "new key issued")
    # key_prefix is not editable, so simple-history's diff leaves it out; the snapshots hold it.
    assert (record.prev_record.key_prefix, record.key_prefix) == (old_prefix, Kiosk.objects.get(pk=kiosk.pk).key_prefix)


def test_staff_change_in_the_list_and_in_the_form(client, boss, host):
    url = reverse("admin:reception_staffmember_changelist")
    client.post(
        url,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": host.pk,
            "_save": "Save",
        },
    )  # unticks "in the office"
    record = host.history.latest()
    assert (record.history_user, record.history_change_reason) == (boss, "changed in the list")
    assert changes(record)["is_present"] == (True, False)

    form = {
        "name": host.name,
        "reading": host.reading,
        "romaji": "Hanako Suzuki",
        "department": "営業部",
        "email": host.email,
        "notify_via": "email",
        "webhook_url": "",
        "is_present": "on",
        "change_reason": "joined sales",
    }
    assert client.post(reverse("admin:reception_staffmember_change", args=[host.pk]), form).status_code == 302
    record = host.history.latest()
    assert record.history_change_reason == "joined sales" and record.history_user == boss
    assert {k: v for k, v in changes(record).items() if k != "updated_at"} == {
        "romaji": ("", "Hanako Suzuki"),
        "department": ("", "営業部"),
        "is_present": (False, True),
    }


def test_appointments_imported_and_changed_are_audited(client, boss, host, tmp_path):
    csv = tmp_path / "appointments.csv"
    csv.write_text(
        "visitor_name,visitor_company,host,start,end\n"
        "山田 太郎,テスト株式会社,suzuki@example.com,2026-12-01T10:00,2026-12-01T11:00\n",
        encoding="utf-8",
    )
    call_command("import_appointments", str(csv), "--reason", "weekly import")
    appointment = Appointment.objects.get()
    created = appointment.history.get()
    assert (created.history_type, created.history_actor, created.history_change_reason) == (
        "+",
        "cli:alice",
        "weekly import",
    )

    start, end = timezone.localtime(appointment.start), timezone.localtime(appointment.end)
    form = {
        "visitor_name": "山田 太郎",
        "visitor_company": "テスト株式会社",
        "host": host.pk,
        "start_0": start.strftime("%Y-%m-%d"),
        "start_1": "14:00:00",
        "end_0": end.strftime("%Y-%m-%d"),
        "end_1": "15:00:00",
        "location": "会議室A",
        "change_reason": "moved to the afternoon",
    }
    assert client.post(reverse("admin:reception_appointment_change", args=[appointment.pk]), form).status_code == 302
    record = appointment.history.latest()
    assert (record.history_user, record.history_change_reason) == (boss, "moved to the afternoon")
    assert set(changes(record)) == {"start", "end", "location"}
    assert changes(record)["location"] == ("", "会議室A")


def test_price_change_in_the_admin_is_a_version_with_history(client, boss):
    old = ModelPrice.objects.create(model="gpt-test", effective_from=timezone.now() - timedelta(days=1))
    form = {f.name: getattr(old, f.name) for f in ModelPrice._meta.fields if f.editable and f.name != "id"}
    form.update(audio_output="80", note="price rise", effective_from_0="2020-01-01", effective_from_1="00:00:00")
    form.pop("effective_from")
    assert client.post(reverse("admin:metrics_modelprice_change", args=[old.pk]), form).status_code == 302

    new = ModelPrice.objects.filter(model="gpt-test").exclude(pk=old.pk).get()
    record = new.history.get()
    assert (record.history_type, record.history_user, record.history_change_reason) == ("+", boss, "price rise")
    entry = AuditEntry.objects.filter(action="price_version_added").latest("created_at")
    assert entry.actor == "user:boss"
    assert Decimal(entry.before["audio_output"]) == 0 and Decimal(entry.after["audio_output"]) == 80


def test_api_token_issue_and_revocation_are_audited(client, boss):
    call_command("create_api_token", "boss", "--reason", "grafana")
    token = ApiToken.objects.get()
    issued = token.history.get()
    assert (issued.history_actor, issued.history_change_reason) == ("cli:alice", "grafana")
    assert "key_hash" not in {field.name for field in issued._meta.fields}

    client.post(reverse("admin:metrics_apitoken_delete", args=[token.pk]), {"post": "yes"})
    assert not ApiToken.objects.exists()
    revoked = ApiToken.history.latest()
    assert (revoked.history_type, revoked.history_user, revoked.history_change_reason) == (
        "-",
        boss,
        "deleted in the admin",
    )


def test_a_purge_leaves_an_audit_entry(capsys):
    for session_id in ("old-1", "old-2", "new"):
        Visit.objects.create(session_id=session_id, visitor_name="山田")
    Visit.objects.exclude(session_id="new").update(created_at=timezone.now() - timedelta(days=100))

    call_command("purge_visitors", "--older-than", "90", "--reason", "monthly retention run")

    assert list(Visit.objects.values_list("session_id", flat=True)) == ["new"]
    entry = AuditEntry.objects.get(action="visitors_purged")
    assert (entry.actor, entry.reason) == ("cli:alice", "monthly retention run")
    assert entry.before == {"visits": 2, "older_than_days": 90} and entry.after == {"visits": 0}
    assert "山田" not in str(entry.before) + str(entry.after)


@pytest.fixture
def raw_token(capsys):
    get_user_model().objects.create_user("operator", "op@example.com", "pw", is_staff=True)
    call_command("create_api_token", "operator")
    return capsys.readouterr().out.strip().splitlines()[-1]


def status(client, raw: str) -> int:
    return client.get("/api/v1/realtime/status", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code


def test_an_expired_token_is_refused(client, raw_token, settings):
    token = ApiToken.objects.get()
    assert round((token.expires_at - token.created_at).total_seconds()) == settings.API_TOKEN_TTL_DAYS * 86400
    assert status(client, raw_token) == 200
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert status(client, raw_token) == 401


def test_last_used_is_written_at_most_once_a_minute(client, raw_token):
    assert ApiToken.objects.get().last_used_at is None
    assert status(client, raw_token) == 200
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    assert status(client, raw_token) == 200
    assert ApiToken.objects.get().last_used_at == first  # within the minute: no write
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    assert status(client, raw_token) == 200
    assert ApiToken.objects.get().last_used_at > first
