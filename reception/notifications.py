"""Host notification: one interface (`Notifier.send`), e-mail and Slack-compatible webhook implementations.

`notify_host` records every attempt series as a HostNotification row (attempts, last error, status), retries
with backoff, and never raises: a failure is a FAILED row and a log line. `notify_with_fallback` adds the
rule that the reception desk hears about a visitor whose host could not be reached. Messages name the
visitor, company, purpose and kiosk; they never contain keys, tokens or webhook URLs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

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


class EmailNotifier(Notifier):
    """Django's `send_mail` (console backend unless EMAIL_BACKEND says otherwise)."""

    channel = StaffMember.NotifyVia.EMAIL

    def send(self, recipient: StaffMember, subject: str, message: str) -> None:
        """Mail the recipient; no address or a backend error raises NotificationError."""
        if not recipient.email:
            raise NotificationError("no e-mail address")
        try:
            send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, [recipient.email], fail_silently=False)
        except Exception as exc:  # any backend error (SMTP, socket) is a failed attempt, not a crash
            raise NotificationError(f"e-mail failed: {type(exc).__name__}") from exc


class WebhookNotifier(Notifier):
    """POST `{"text": ...}` (Slack-compatible) to the recipient's webhook URL."""

    channel = StaffMember.NotifyVia.WEBHOOK

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client

    def send(self, recipient: StaffMember, subject: str, message: str) -> None:
        """Post the message; a missing URL, a transport error or a non-2xx answer raises NotificationError."""
        if not recipient.webhook_url:
            raise NotificationError("no webhook URL")
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


def notify_host(visit: Visit, recipient: StaffMember, message: str, subject: str = "") -> HostNotification:
    """Send `message` to `recipient` about `visit`, retrying; returns the SENT or FAILED row (never raises)."""
    notifier = notifier_for(recipient)
    subject = subject or f"[受付 / Reception] {visit.visitor_name or '?'}"
    row = HostNotification.objects.create(visit=visit, recipient=recipient, channel=notifier.channel)
    max_attempts = max(1, settings.NOTIFICATION_MAX_ATTEMPTS)
    for attempt in range(1, max_attempts + 1):
        row.attempts = attempt
        try:
            notifier.send(recipient, subject, message)
        except NotificationError as exc:
            row.last_error = str(exc)[:500]
            row.save(update_fields=["attempts", "last_error"])
            logger.warning(
                "notification %s to staff %s failed (attempt %d/%d): %s",
                row.pk,
                recipient.pk,
                attempt,
                max_attempts,
                row.last_error,
            )
            if attempt < max_attempts:
                time.sleep(settings.NOTIFICATION_RETRY_DELAY_SECONDS * 2 ** (attempt - 1))
            continue
        row.status = HostNotification.Status.SENT
        row.sent_at = timezone.now()
        row.save(update_fields=["attempts", "status", "sent_at"])
        logger.info("notification %s sent to staff %s via %s", row.pk, recipient.pk, notifier.channel)
        return row
    row.status = HostNotification.Status.FAILED
    row.save(update_fields=["status"])
    logger.error("notification %s to staff %s FAILED after %d attempts", row.pk, recipient.pk, max_attempts)
    return row


def reception_desk() -> StaffMember | None:
    """The staff member who stands for the reception desk (present ones first), or None."""
    return StaffMember.objects.filter(is_reception_desk=True).order_by("-is_present", "pk").first()


@dataclass(frozen=True)
class Outcome:
    """Who was reached: the host, the desk, both or neither."""

    host_reached: bool
    desk_reached: bool


def notify_with_fallback(visit: Visit, host: StaffMember | None, reason: str) -> Outcome:
    """Notify the host (if any) about the visit; when that fails or there is no host, notify the desk."""
    if host is not None and not host.is_reception_desk:
        row = notify_host(visit, host, compose_message(visit, reason))
        if row.status == HostNotification.Status.SENT:
            return Outcome(host_reached=True, desk_reached=False)
        reason = "host_unreachable"
    desk = reception_desk()
    if desk is None:
        logger.error("visit %s: no reception desk staff member to notify (%s)", visit.pk, reason)
        return Outcome(host_reached=False, desk_reached=False)
    row = notify_host(visit, desk, compose_message(visit, reason, host=host))
    return Outcome(host_reached=False, desk_reached=row.status == HostNotification.Status.SENT)


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
