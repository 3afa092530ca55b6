"""Host notification: one interface (`Notifier.send`), e-mail and Slack-compatible webhook implementations.

Every attempt series is a HostNotification row (PENDING, then SENT or FAILED; attempts, last error). The
conversation only creates the row (`first_notification`); `reception.tasks` sends it in the background, one
attempt per task run (`deliver`), retrying with backoff, and tells the reception desk about a visitor whose host
could not be reached (`next_step`). Nothing here raises on a failed delivery: it is a FAILED row and a log line.
Messages name the visitor, company, purpose and kiosk; they never contain keys, tokens or webhook URLs.
"""

from __future__ import annotations

import logging

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone
from huey.contrib.djhuey import db_task

from .models import HostNotification, StaffMember, Visit

logger = logging.getLogger(__name__)


class NotificationError(Exception):
    """A notification could not be delivered; the message is safe to store (no URLs, no secrets)."""


class Notifier:
    """Interface: deliver one message to one staff member or raise NotificationError."""

    channel: str = ""

    def send(self, recipient: StaffMember, subject: str, message: str) -> None:
        """Deliver once (no retries here); raise NotificationError with a storable reason on failure."""
        raise NotImplementedError

    def missing_address(self, recipient: StaffMember) -> str:
        """Why `send` cannot work for this recipient (no address), known before any attempt; empty if it can."""
        raise NotImplementedError


class EmailNotifier(Notifier):
    """Django's `send_mail` (console backend unless EMAIL_BACKEND says otherwise)."""

    channel = StaffMember.NotifyVia.EMAIL

    def missing_address(self, recipient: StaffMember) -> str:
        """ "no e-mail address" when the recipient has none."""
        return "" if recipient.email else "no e-mail address"

    def send(self, recipient: StaffMember, subject: str, message: str) -> None:
        """Mail the recipient; no address or a backend error raises NotificationError."""
        if missing := self.missing_address(recipient):
            raise NotificationError(missing)
        try:
            send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, [recipient.email], fail_silently=False)
        except Exception as exc:  # any backend error (SMTP, socket) is a failed attempt, not a crash
            raise NotificationError(f"e-mail failed: {type(exc).__name__}") from exc


class WebhookNotifier(Notifier):
    """POST `{"text": ...}` (Slack-compatible) to the recipient's webhook URL."""

    channel = StaffMember.NotifyVia.WEBHOOK

    def missing_address(self, recipient: StaffMember) -> str:
        """ "no webhook URL" when the recipient has none."""
        return "" if recipient.webhook_url else "no webhook URL"

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client

    def send(self, recipient: StaffMember, subject: str, message: str) -> None:
        """Post the message; a missing URL, a transport error or a non-2xx answer raises NotificationError."""
        if missing := self.missing_address(recipient):
            raise NotificationError(missing)
        timeout = settings.NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS
        try:
            if self._client is not None:
                response = self._client.post(recipient.webhook_url, json={"text": f"{subject}\n{message}"})
            else:
                response = httpx.post(recipient.webhook_url, json={"text": f"{subject}\n{message}"}, timeout=timeout)
        except httpx.HTTPError as exc:
            # Webhook URLs carry tokens: store the error class only, never str(exc), which names the URL.
            raise NotificationError(f"webhook failed: {type(exc).__name__}") from exc
        if not response.is_success:
            raise NotificationError(f"webhook answered HTTP {response.status_code}")


def notifier_for(recipient: StaffMember) -> Notifier:
    """The notifier the staff member chose."""
    if recipient.notify_via == StaffMember.NotifyVia.WEBHOOK:
        return WebhookNotifier()
    return EmailNotifier()


def _attempt_once(row: HostNotification) -> None:
    """One delivery attempt of a PENDING row: SENT, or its error kept (FAILED once out of attempts); logged."""
    recipient = row.recipient
    notifier = notifier_for(recipient)
    visit = row.visit
    subject = f"[受付 / Reception] {visit.visitor_name or '?'}"
    row.attempts += 1
    try:
        notifier.send(recipient, subject, compose_message(visit, row.reason))
    except NotificationError as exc:
        row.last_error = str(exc)[:500]
        max_attempts = max(1, settings.NOTIFICATION_MAX_ATTEMPTS)
        if row.attempts >= max_attempts:
            row.status = HostNotification.Status.FAILED
        row.save(update_fields=["attempts", "last_error", "status"])
        log = logger.error if row.status == HostNotification.Status.FAILED else logger.warning
        log(
            "notification %s to staff %s failed (attempt %d/%d): %s",
            row.pk,
            recipient.pk,
            row.attempts,
            max_attempts,
            row.last_error,
        )
        return
    row.status = HostNotification.Status.SENT
    row.sent_at = timezone.now()
    row.save(update_fields=["attempts", "status", "sent_at"])
    logger.info("notification %s sent to staff %s via %s", row.pk, recipient.pk, notifier.channel)


def deliver(row_id: int) -> HostNotification | None:
    """One attempt at a PENDING notification (the background task's body); the row after it, or None when the
    row is gone (purged) or no longer pending. A host's FAILED row hands the visitor to the desk: see `next_step`."""
    row = HostNotification.objects.select_related("visit__kiosk", "visit__appointment", "visit__host", "recipient")
    row = row.filter(pk=row_id, status=HostNotification.Status.PENDING, recipient__isnull=False).first()
    if row is None:
        return None
    _attempt_once(row)
    return row


def retry_delay(row: HostNotification) -> float:
    """Seconds before the next attempt: NOTIFICATION_RETRY_DELAY_SECONDS, doubled after each failure."""
    return settings.NOTIFICATION_RETRY_DELAY_SECONDS * 2 ** max(0, row.attempts - 1)


def reception_desk() -> StaffMember | None:
    """The staff member who stands for the reception desk (present ones first), or None."""
    return StaffMember.objects.filter(is_reception_desk=True).order_by("-is_present", "pk").first()


def _pending(visit: Visit, recipient: StaffMember, reason: str) -> HostNotification:
    """A PENDING row for `recipient`, or a FAILED one with no attempt when it has no address to send to."""
    notifier = notifier_for(recipient)
    row = HostNotification(visit=visit, recipient=recipient, channel=notifier.channel, reason=reason)
    missing = notifier.missing_address(recipient)
    if missing:
        row.status, row.last_error = HostNotification.Status.FAILED, missing
        logger.error("notification to staff %s not sent: %s", recipient.pk, missing)
    row.save()
    return row


def to_desk_instead(visit: Visit, reason: str) -> HostNotification | None:
    """The desk's PENDING row about this visit, or None when no desk staff member can be sent to (logged)."""
    desk = reception_desk()
    if desk is None:
        logger.error("visit %s: no reception desk staff member to notify (%s)", visit.pk, reason)
        return None
    row = _pending(visit, desk, reason)
    return row if row.status == HostNotification.Status.PENDING else None


def first_notification(visit: Visit, host: StaffMember | None, reason: str) -> HostNotification | None:
    """The PENDING row to send first: to the host, else (no host, the host is the desk, or the host has no address
    to send to) to the desk; None when nobody can be sent to. Sending is the background task's."""
    if host is not None and not host.is_reception_desk:
        row = _pending(visit, host, reason)
        if row.status == HostNotification.Status.PENDING:
            return row
        reason = "host_unreachable"
    return to_desk_instead(visit, reason)


def next_step(row: HostNotification) -> HostNotification | None:
    """After an attempt: the desk's row when a host's notification just FAILED, else None."""
    failed_host = row.status == HostNotification.Status.FAILED and not row.recipient.is_reception_desk
    return to_desk_instead(row.visit, "host_unreachable") if failed_host else None


@db_task()
def deliver_notification(row_id: int) -> None:
    """One attempt at the notification; queue the retry (after its back-off) or, when a host's failed, the desk's."""
    row = deliver(row_id)
    if row is None:
        return
    if row.status == HostNotification.Status.PENDING:
        delay = retry_delay(row)
        if delay > 0:
            deliver_notification.schedule((row.pk,), delay=delay)
        else:
            deliver_notification(row.pk)
        return
    desk_row = next_step(row)
    if desk_row is not None:
        deliver_notification(desk_row.pk)


def notify_in_background(visit: Visit, host: StaffMember | None, reason: str) -> HostNotification | None:
    """Queue the notification of the host (or of the desk) about the visit and return at once with its PENDING
    row; None when nobody can be sent to. A failure of the queue itself is a FAILED row, never a crash."""
    row = first_notification(visit, host, reason)
    if row is None:
        return None
    try:
        deliver_notification(row.pk)
    except Exception:  # the queue's storage (Redis, the SQLite file) is down: say so, do not break the visit
        logger.exception("notification %s could not be queued", row.pk)
        row.status, row.last_error = HostNotification.Status.FAILED, "task queue unavailable"
        row.save(update_fields=["status", "last_error"])
        return None
    return row


_REASONS = {
    "appointment": "お約束のお客様がお見えです / Your visitor with an appointment has arrived.",
    "no_appointment": "お約束なしのお客様がお見えです / A visitor with no appointment is asking for you.",
    "delivery": "お届け物です / A delivery has arrived.",
    "delivery_signature": "お届け物（受領サイン要）です / A delivery needs a signature at the desk.",
    "host_unreachable": "担当者に連絡がつきません。受付で対応してください / The host could not be reached.",
    "unknown_host": "担当者が見つかりません。受付で対応してください / The host is not in the directory.",
    "absent_host": "担当者が不在です。受付で対応してください / The host is absent; please attend.",
    "ambiguous_host": "担当者を特定できません。受付で対応してください / Which host is meant is unclear.",
    "unclear": "受付の会話が進みません。対応してください / The visitor could not be understood; please attend.",
    "no_host": "訪問先が不明です。受付で対応してください / No host was named; please attend.",
}


def compose_message(visit: Visit, reason: str, host: StaffMember | None = None) -> str:
    """The staff-facing text: why, who (visitor, company), what for, where (kiosk), appointment or not."""
    lines = [_REASONS.get(reason, reason)]
    lines.append(f"来訪者 / Visitor: {visit.visitor_name or '?'}（{visit.company_name or '-'}）")
    lines.append(f"ご用件 / Purpose: {visit.purpose or '-'}")
    target = host or visit.host
    if target is not None or visit.host_name:
        lines.append(f"訪問先 / Host: {target.name if target else visit.host_name}")
    if visit.appointment_found and visit.appointment is not None:
        when = timezone.localtime(visit.appointment.start).strftime("%H:%M")
        lines.append(f"お約束 / Appointment: {when} {visit.appointment.location}".rstrip())
    elif visit.visitor_type != Visit.VisitorType.DELIVERY:
        lines.append("お約束なし / No appointment")
    if visit.kiosk is not None:
        where = f"{visit.kiosk.name}（{visit.kiosk.location}）" if visit.kiosk.location else visit.kiosk.name
        lines.append(f"受付端末 / Kiosk: {where}")
    return "\n".join(lines)
