"""Host notification (its task run at once, TASK_QUEUE_IMMEDIATE): e-mail (locmem), webhook against a real local
HTTP server, retries, desk fallback. tests/reception/test_tasks.py runs the same on a real consumer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from huey.contrib.djhuey import HUEY

from reception.models import HostNotification, Kiosk, StaffMember, Visit
from reception.notifications import (
    EmailNotifier,
    WebhookNotifier,
    compose_message,
    notifier_for,
    notify_in_background,
    retry_delay,
)

SECRET_PATH = "/hooks/T000/B000/s3cr3t-token"


class FlakyWebhook:
    """A Slack-like webhook on 127.0.0.1 that fails the first `failures` requests (None: always)."""

    def __init__(self, failures: int | None, gate: threading.Event | None = None) -> None:
        self.failures = failures
        self.gate = gate  # when given, each answer waits for it (the request is counted first)
        self.received: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.received.append(body)
                if owner.gate is not None:
                    owner.gate.wait(timeout=10)
                failing = owner.failures is None or len(owner.received) <= owner.failures
                self.send_response(500 if failing else 200)
                self.end_headers()
                self.wfile.write(b"error" if failing else b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyWebhook:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def notify_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    settings.NOTIFICATION_RETRY_DELAY_SECONDS = 0
    settings.NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS = 2
    return settings


@pytest.fixture
def visit(db):
    kiosk = Kiosk(name="Lobby 1", location="1階ロビー")
    kiosk.set_new_key()
    kiosk.save()
    return Visit.objects.create(
        session_id="n-1",
        kiosk=kiosk,
        visitor_name="山田太郎",
        company_name="株式会社テスト",
        purpose="打ち合わせ",
        host_name="田中",
        visitor_type=Visit.VisitorType.NO_APPOINTMENT,
    )


@pytest.fixture
def desk(db):
    return StaffMember.objects.create(name="受付", email="desk@example.com", is_reception_desk=True)


def _webhook_host(url: str) -> StaffMember:
    return StaffMember.objects.create(name="田中 一郎", notify_via=StaffMember.NotifyVia.WEBHOOK, webhook_url=url)


@pytest.mark.django_db
def test_email_is_sent_and_recorded(notify_settings, visit):
    host = StaffMember.objects.create(name="田中 一郎", email="tanaka@example.com")
    row = notify_in_background(visit, host, "no_appointment")
    row.refresh_from_db()
    assert row.status == HostNotification.Status.SENT and row.attempts == 1 and row.sent_at is not None
    assert row.channel == "email" and row.reason == "no_appointment"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["tanaka@example.com"]
    body = mail.outbox[0].body
    for fragment in ("山田太郎", "株式会社テスト", "打ち合わせ", "Lobby 1", "1階ロビー", "No appointment"):
        assert fragment in body
    assert "山田太郎" in mail.outbox[0].subject


@pytest.mark.django_db
def test_email_without_address_fails_on_record_before_any_attempt(notify_settings, visit):
    host = StaffMember.objects.create(name="田中 一郎", email="")
    assert notify_in_background(visit, host, "no_appointment") is None  # no desk either: nobody to send to
    row = HostNotification.objects.get(recipient=host)
    assert row.status == HostNotification.Status.FAILED and row.attempts == 0
    assert row.last_error == "no e-mail address"


@pytest.mark.django_db
def test_email_backend_failure_is_retried_then_failed(notify_settings, visit):
    notify_settings.EMAIL_BACKEND = "tests.reception.test_notifications.BrokenEmailBackend"
    row = notify_in_background(visit, StaffMember.objects.create(name="x", email="x@example.com"), "no_appointment")
    row.refresh_from_db()
    assert row.status == HostNotification.Status.FAILED and row.attempts == 3
    assert row.last_error == "e-mail failed: ConnectionRefusedError"


class BrokenEmailBackend:
    """An e-mail backend whose SMTP server refuses every connection."""

    def __init__(self, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError


@pytest.mark.django_db
def test_webhook_retries_until_it_succeeds(notify_settings, visit):
    with FlakyWebhook(failures=2) as hook:
        row = notify_in_background(visit, _webhook_host(hook.url), "no_appointment")
    row.refresh_from_db()
    assert row.status == HostNotification.Status.SENT and row.attempts == 3
    assert row.channel == "webhook"
    assert row.last_error == "webhook answered HTTP 500"  # the earlier failures stay on record
    assert len(hook.received) == 3
    assert set(hook.received[-1]) == {"text"} and "山田太郎" in hook.received[-1]["text"]


@pytest.mark.django_db
def test_webhook_that_always_fails_leaves_a_failed_row_and_the_desk_is_told(notify_settings, visit, desk, caplog):
    with FlakyWebhook(failures=None) as hook:
        host = _webhook_host(hook.url)
        Visit.objects.filter(pk=visit.pk).update(host=host)  # as the conversation writes it
        first = notify_in_background(visit, host, "no_appointment")
    assert first.recipient == host  # the host's notification was queued first
    failed = HostNotification.objects.get(recipient=host)
    assert failed.status == HostNotification.Status.FAILED and failed.attempts == 3 and len(hook.received) == 3
    assert "HTTP 500" in failed.last_error
    sent = HostNotification.objects.get(recipient=desk)
    assert sent.status == HostNotification.Status.SENT and sent.reason == "host_unreachable"
    assert mail.outbox[0].to == ["desk@example.com"] and "連絡がつきません" in mail.outbox[0].body
    assert "訪問先 / Host: 田中 一郎" in mail.outbox[0].body
    assert any(r.levelname == "ERROR" and str(failed.pk) in r.getMessage() for r in caplog.records)
    # The webhook URL carries a token: it appears in no error and no log line.
    assert "s3cr3t" not in failed.last_error and "s3cr3t" not in caplog.text


@pytest.mark.django_db
def test_unreachable_webhook_is_a_failure_not_a_crash(notify_settings, visit):
    with FlakyWebhook(failures=None) as hook:
        url = hook.url
    row = notify_in_background(visit, _webhook_host(url), "no_appointment")  # the server is gone: refused
    row.refresh_from_db()
    assert row.status == HostNotification.Status.FAILED and row.last_error == "webhook failed: ConnectError"


@pytest.mark.django_db
def test_retry_is_scheduled_after_a_doubling_back_off(notify_settings, visit):
    notify_settings.NOTIFICATION_RETRY_DELAY_SECONDS = 0.5
    host = StaffMember.objects.create(name="x", email="x@example.com")
    notify_settings.EMAIL_BACKEND = "tests.reception.test_notifications.BrokenEmailBackend"
    row = notify_in_background(visit, host, "no_appointment")
    row.refresh_from_db()
    assert row.status == HostNotification.Status.PENDING and row.attempts == 1  # no sleep: a retry is scheduled
    [retry] = HUEY.scheduled()
    assert retry.args == (row.pk,) and retry.name.endswith("deliver_notification")
    assert [retry_delay(HostNotification(attempts=n)) for n in (1, 2)] == [0.5, 1.0]


@pytest.mark.django_db
def test_no_desk_and_no_host_reports_nobody_reached(notify_settings, visit):
    assert notify_in_background(visit, None, "unknown_host") is None
    assert not HostNotification.objects.exists()


@pytest.mark.django_db
def test_a_queue_that_is_down_is_a_failed_row_not_a_crash(notify_settings, visit, monkeypatch):
    def storage_down(task):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(HUEY, "enqueue", storage_down)
    host = StaffMember.objects.create(name="x", email="x@example.com")
    assert notify_in_background(visit, host, "no_appointment") is None
    row = HostNotification.objects.get()
    assert row.status == HostNotification.Status.FAILED and row.last_error == "task queue unavailable"


@pytest.mark.django_db
def test_delivery_message_does_not_say_no_appointment(visit):
    visit.visitor_type = Visit.VisitorType.DELIVERY
    message = compose_message(visit, "delivery_signature")
    assert "受領サイン" in message and "No appointment" not in message


@pytest.mark.django_db
def test_notifier_follows_the_staff_members_choice(db):
    assert isinstance(notifier_for(StaffMember(notify_via="email")), EmailNotifier)
    assert isinstance(notifier_for(StaffMember(notify_via="webhook")), WebhookNotifier)


@pytest.mark.django_db
def test_a_failed_notification_stands_out_in_the_admin(admin_client, notify_settings, visit):
    notify_in_background(visit, StaffMember.objects.create(name="田中 一郎", email=""), "no_appointment")
    page = admin_client.get("/admin/reception/hostnotification/", {"status__exact": "failed"}).content.decode()
    assert "<strong>⚠ " in page and "no e-mail address" in page and "田中 一郎" in page
    sent = admin_client.get("/admin/reception/hostnotification/", {"status__exact": "sent"}).content.decode()
    assert "田中 一郎" not in sent
