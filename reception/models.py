"""Reception domain models: kiosks and their pairing, staff, appointments, visits, notifications."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.history import AuditedHistory


def hash_secret(raw: str) -> str:
    """SHA-256 of a random secret (kiosk keys, pairing and device tokens are 256-bit random)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class KioskQuerySet(models.QuerySet):
    def active(self) -> KioskQuerySet:
        return self.filter(is_active=True)

    def authenticate_key(self, raw_key: str) -> Kiosk | None:
        """The active kiosk whose key this is, or None."""
        if not raw_key:
            return None
        return self.active().filter(key_hash=hash_secret(raw_key)).first()

    def authenticate_device(self, raw_device_token: str) -> Kiosk | None:
        """The active kiosk a paired browser's device cookie belongs to, or None."""
        if not raw_device_token:
            return None
        pairing = (
            KioskPairing.objects.select_related("kiosk")
            .filter(device_token_hash=hash_secret(raw_device_token), revoked=False, kiosk__is_active=True)
            .first()
        )
        return pairing.kiosk if pairing else None


class Kiosk(models.Model):
    """A lobby terminal. Its key is shown once and stored only as a hash."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    location = models.CharField(
        _("location"), max_length=200, blank=True, help_text=_("Where visitors wait, e.g. 1F lobby sofas.")
    )
    key_prefix = models.CharField(
        _("key prefix"), max_length=8, editable=False, help_text=_("First characters of the key, to tell keys apart.")
    )
    key_hash = models.CharField(_("key hash"), max_length=64, editable=False, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    # The kiosk's own voices (reception/kiosk_voices.py); blank: the setting's. Checked by the admin's choices.
    realtime_voice = models.CharField(
        _("Realtime voice"),
        max_length=40,
        blank=True,
        help_text=_("The voice of this kiosk's Realtime sessions. Blank: the REALTIME_VOICE setting."),
    )
    legacy_voice_ja = models.CharField(
        _("local voice (Japanese)"),
        max_length=80,
        blank=True,
        help_text=_("The voice of this kiosk's Legacy sessions in Japanese. Blank: the LEGACY_VOICE_JA setting."),
    )
    legacy_voice_en = models.CharField(
        _("local voice (English)"),
        max_length=80,
        blank=True,
        help_text=_("The voice of this kiosk's Legacy sessions in English. Blank: the LEGACY_VOICE_EN setting."),
    )

    objects = KioskQuerySet.as_manager()
    history = AuditedHistory(excluded_fields=["key_hash"])

    class Meta:
        verbose_name = _("kiosk")
        verbose_name_plural = _("kiosks")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_new_key(self) -> str:
        """Give the kiosk a fresh key and return it; only its hash is kept (save() is the caller's)."""
        raw = secrets.token_urlsafe(32)
        self.key_prefix = raw[:8]
        self.key_hash = hash_secret(raw)
        return raw


class KioskPairing(models.Model):
    """A one-time link that pairs a browser with a kiosk by setting a device cookie."""

    kiosk = models.ForeignKey(Kiosk, on_delete=models.CASCADE, related_name="pairings", verbose_name=_("kiosk"))
    token_hash = models.CharField(_("link token hash"), max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField(_("link expires at"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    paired_at = models.DateTimeField(_("paired at"), null=True, blank=True)
    device_token_hash = models.CharField(
        _("device token hash"), max_length=64, blank=True, editable=False, db_index=True
    )
    revoked = models.BooleanField(
        _("revoked"), default=False, help_text=_("A revoked pairing no longer lets its browser in.")
    )
    history = AuditedHistory(excluded_fields=["token_hash", "device_token_hash"])

    class Meta:
        verbose_name = _("kiosk pairing")
        verbose_name_plural = _("kiosk pairings")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kiosk} ({self.created_at:%Y-%m-%d %H:%M})" if self.created_at else str(self.kiosk)

    @classmethod
    def create_link(cls, kiosk: Kiosk, user=None) -> tuple[KioskPairing, str]:
        """A new pairing and its raw link token (shown once)."""
        raw = secrets.token_urlsafe(32)
        pairing = cls.objects.create(
            kiosk=kiosk,
            token_hash=hash_secret(raw),
            expires_at=timezone.now() + timedelta(hours=settings.KIOSK_PAIRING_LINK_HOURS),
            created_by=user,
        )
        return pairing, raw

    @classmethod
    def redeem(cls, raw_link_token: str) -> str | None:
        """Use a link once: return a new device token for the cookie, or None if the link is invalid."""
        device_token = secrets.token_urlsafe(32)
        # Conditional UPDATE: of two browsers opening the same link, only one gets the kiosk.
        claimed = cls.objects.filter(
            token_hash=hash_secret(raw_link_token), paired_at__isnull=True, revoked=False, expires_at__gt=timezone.now()
        ).update(paired_at=timezone.now(), device_token_hash=hash_secret(device_token))
        return device_token if claimed == 1 else None


class StaffMember(models.Model):
    """Someone a visitor can come to see, or the reception desk itself."""

    class NotifyVia(models.TextChoices):
        EMAIL = "email", _("e-mail")
        WEBHOOK = "webhook", _("webhook (Slack-compatible)")

    name = models.CharField(_("name"), max_length=100, help_text=_("As written, e.g. 田中 一郎."))
    reading = models.CharField(_("reading"), max_length=100, blank=True, help_text=_("In kana, e.g. たなか いちろう."))
    romaji = models.CharField(_("romaji"), max_length=100, blank=True, help_text=_("e.g. Ichiro Tanaka."))
    department = models.CharField(_("department"), max_length=100, blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    notify_via = models.CharField(_("notify via"), max_length=10, choices=NotifyVia.choices, default=NotifyVia.EMAIL)
    webhook_url = models.URLField(_("webhook URL"), blank=True)
    is_present = models.BooleanField(
        _("in the office"), default=True, help_text=_("Untick when absent: visitors are sent to the reception desk.")
    )
    is_reception_desk = models.BooleanField(
        _("reception desk"), default=False, help_text=_("Notified when a host is unknown, absent or unreachable.")
    )
    # Part of the directory's version: every process reloads its cached directory when this moves.
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    history = AuditedHistory()

    class Meta:
        verbose_name = _("staff member")
        verbose_name_plural = _("staff members")
        ordering = ["reading", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.department})" if self.department else self.name


class Appointment(models.Model):
    """A visit announced in advance: who comes, to see whom, when, and where they meet."""

    visitor_name = models.CharField(_("visitor name"), max_length=100)
    visitor_company = models.CharField(_("visitor company"), max_length=200, blank=True)
    host = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="appointments", verbose_name=_("host"))
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    location = models.CharField(_("meeting place"), max_length=200, blank=True, help_text=_("e.g. 会議室A."))
    history = AuditedHistory()

    class Meta:
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")
        ordering = ["start"]
        constraints = [
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="appointment_ends_after_start")
        ]

    def __str__(self) -> str:
        return f"{self.visitor_name} → {self.host.name} {timezone.localtime(self.start):%Y-%m-%d %H:%M}"


class VisitQuerySet(models.QuerySet):
    def older_than(self, days: int) -> VisitQuerySet:
        return self.filter(created_at__lt=timezone.now() - timedelta(days=days))

    def unfinished(self) -> VisitQuerySet:
        return self.filter(status__in=(Visit.Status.COLLECTING, Visit.Status.CONFIRMING))


class Visit(models.Model):
    """One visitor's reception, projected from the workflow state of its session."""

    class VisitorType(models.TextChoices):
        UNKNOWN = "unknown", _("not yet known")
        APPOINTMENT = "appointment", _("appointment")
        NO_APPOINTMENT = "no_appointment", _("visit without appointment")
        SALES = "sales", _("sales")
        DELIVERY = "delivery", _("delivery")

    class Status(models.TextChoices):
        COLLECTING = "collecting", _("collecting details")
        CONFIRMING = "confirming", _("confirming details")
        HOST_NOTIFIED = "host_notified", _("host notified")
        SENT_TO_DESK = "sent_to_desk", _("sent to the reception desk")
        DECLINED = "declined", _("politely declined")
        DELIVERY_GUIDED = "delivery_guided", _("delivery guided")
        ENDED = "ended", _("ended before completion")
        ABANDONED = "abandoned", _("abandoned (the visitor walked away)")

    session_id = models.CharField(_("session id"), max_length=64, unique=True)
    kiosk = models.ForeignKey(
        Kiosk, null=True, blank=True, on_delete=models.SET_NULL, related_name="visits", verbose_name=_("kiosk")
    )
    language = models.CharField(_("language"), max_length=2, default="ja")
    visitor_name = models.CharField(_("visitor name"), max_length=200, blank=True)
    company_name = models.CharField(_("company"), max_length=200, blank=True)
    purpose = models.CharField(_("purpose"), max_length=300, blank=True)
    host_name = models.CharField(_("host as said"), max_length=200, blank=True)
    host = models.ForeignKey(
        StaffMember, null=True, blank=True, on_delete=models.SET_NULL, related_name="visits", verbose_name=_("host")
    )
    visitor_type = models.CharField(
        _("visitor type"), max_length=20, choices=VisitorType.choices, default=VisitorType.UNKNOWN
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.COLLECTING)
    appointment = models.ForeignKey(
        Appointment, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("appointment")
    )
    appointment_found = models.BooleanField(_("appointment found"), default=False)
    host_notified = models.BooleanField(_("host notified"), default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    objects = VisitQuerySet.as_manager()

    class Meta:
        verbose_name = _("visit")
        verbose_name_plural = _("visits")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.visitor_name or '?'} ({self.company_name or '-'}) {self.get_status_display()}"


class HostNotification(models.Model):
    """One attempt series to reach a host (or the desk) about a visit; failures stay on record."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="notifications", verbose_name=_("visit"))
    recipient = models.ForeignKey(StaffMember, null=True, on_delete=models.SET_NULL, verbose_name=_("recipient"))
    channel = models.CharField(_("channel"), max_length=10, choices=StaffMember.NotifyVia.choices)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    # Why the recipient is told (notifications._REASONS): the message is composed from it when it is sent.
    reason = models.CharField(_("reason"), max_length=30, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("host notification")
        verbose_name_plural = _("host notifications")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.recipient} via {self.channel}: {self.status}"
