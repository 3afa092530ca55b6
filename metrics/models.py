"""Per-turn and per-session metrics, the Realtime cost ledger, the versioned price table, alert episodes and API
tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.history import AuditedHistory

PRICE_FIELD = {"max_digits": 12, "decimal_places": 6, "default": Decimal(0)}
USD_FIELD = {"max_digits": 20, "decimal_places": 12}


class Mode(models.TextChoices):
    """The two voice paths a session or a turn runs on."""

    REALTIME = "realtime", _("Realtime")
    LEGACY = "legacy", _("Legacy")


class UnknownPrice(LookupError):
    """No price version of this model is in force at that time."""


class ModelPriceQuerySet(models.QuerySet):
    def effective(self, model: str, at: datetime) -> ModelPrice:
        """The version of ``model``'s prices in force at ``at`` (exact name, else without a date suffix)."""
        for name in candidate_names(model):
            price = self.filter(model=name, effective_from__lte=at).order_by("-effective_from").first()
            if price is not None:
                return price
        raise UnknownPrice(f"No price for model {model!r} at {at:%Y-%m-%d %H:%M}.")

    def current(self) -> list[ModelPrice]:
        """The version in force now of every priced model."""
        now = timezone.now()
        latest: dict[str, ModelPrice] = {}
        for price in self.filter(effective_from__lte=now).order_by("model", "effective_from"):
            latest[price.model] = price
        return list(latest.values())


def candidate_names(model: str) -> list[str]:
    """``gpt-realtime-2025-08-28`` is priced as itself if listed, else as ``gpt-realtime``."""
    parts = model.split("-")
    if len(parts) > 3 and [len(p) for p in parts[-3:]] == [4, 2, 2] and all(p.isdigit() for p in parts[-3:]):
        return [model, "-".join(parts[:-3])]
    return [model]


class ModelPrice(models.Model):
    """One version of a model's prices (USD per 1M tokens, or per minute of audio for speech models).

    Versions are never edited in place: a change in the admin saves a new row with a later
    ``effective_from``, so each recorded turn keeps the version it was priced with.
    """

    model = models.CharField(_("model"), max_length=64, db_index=True)
    effective_from = models.DateTimeField(_("effective from"), db_index=True)
    text_input = models.DecimalField(_("text input / 1M tokens"), **PRICE_FIELD)
    cached_text_input = models.DecimalField(_("cached text input / 1M tokens"), **PRICE_FIELD)
    audio_input = models.DecimalField(_("audio input / 1M tokens"), **PRICE_FIELD)
    cached_audio_input = models.DecimalField(_("cached audio input / 1M tokens"), **PRICE_FIELD)
    text_output = models.DecimalField(_("text output / 1M tokens"), **PRICE_FIELD)
    audio_output = models.DecimalField(_("audio output / 1M tokens"), **PRICE_FIELD)
    audio_input_per_minute = models.DecimalField(
        _("audio input / minute"), help_text=_("Speech-to-text models billed by the minute."), **PRICE_FIELD
    )
    audio_output_per_minute = models.DecimalField(
        _("audio output / minute"), help_text=_("Text-to-speech models, per minute of speech."), **PRICE_FIELD
    )
    note = models.CharField(_("note"), max_length=200, blank=True, help_text=_("Where the prices come from."))
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = ModelPriceQuerySet.as_manager()
    history = AuditedHistory()

    class Meta:
        verbose_name = _("model price")
        verbose_name_plural = _("model prices")
        ordering = ["model", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="metrics_price_version")]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        for field in self._meta.concrete_fields:
            value = getattr(self, field.attname)
            if isinstance(value, Decimal) and value < 0:
                raise ValidationError({field.name: _("A price cannot be negative.")})


class TurnMetric(models.Model):
    """One assistant turn: latency, usage by kind, model, cost and the price version used."""

    event_id = models.CharField(
        _("event id"), max_length=64, unique=True, help_text=_("The response id, or a generated id; dedupes retries.")
    )
    session_id = models.CharField(_("session id"), max_length=64, db_index=True)
    occurred_at = models.DateTimeField(_("at"), db_index=True)
    path = models.CharField(_("voice path"), max_length=8, choices=Mode.choices)
    model = models.CharField(_("model"), max_length=64, blank=True)
    ttfa_ms = models.FloatField(_("end of speech to first audio (ms)"), null=True, blank=True)
    upstream_ms = models.FloatField(_("upstream first byte (ms)"), null=True, blank=True)
    server_ms = models.FloatField(_("time our server adds (ms)"), null=True, blank=True)
    text_input_tokens = models.PositiveIntegerField(_("text input tokens"), default=0)
    audio_input_tokens = models.PositiveIntegerField(_("audio input tokens"), default=0)
    cached_text_input_tokens = models.PositiveIntegerField(_("cached text input tokens"), default=0)
    cached_audio_input_tokens = models.PositiveIntegerField(_("cached audio input tokens"), default=0)
    text_output_tokens = models.PositiveIntegerField(_("text output tokens"), default=0)
    audio_output_tokens = models.PositiveIntegerField(_("audio output tokens"), default=0)
    audio_input_seconds = models.FloatField(_("audio in (s)"), default=0)
    audio_output_seconds = models.FloatField(_("audio out (s)"), default=0)
    cost_usd = models.DecimalField(_("cost (USD)"), null=True, blank=True, **USD_FIELD)
    price = models.ForeignKey(
        ModelPrice, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("price version")
    )
    ok = models.BooleanField(_("succeeded"), default=True)
    error = models.CharField(_("error"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("turn")
        verbose_name_plural = _("turns")
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["path", "occurred_at"], name="metrics_turn_path_time")]

    def __str__(self) -> str:
        return f"{self.session_id} {self.path} {self.occurred_at:%H:%M:%S}"


class Outcome(models.TextChoices):
    COMPLETED = "completed", _("completed")
    HANDED_OFF = "handed_off", _("handed to the desk")
    ABANDONED = "abandoned", _("visitor left")
    ERROR = "error", _("error")


class Satisfaction(models.IntegerChoices):
    """The visitor's one-tap answer at the end of a visit (optional)."""

    UNHAPPY = 1, _("unhappy")
    NEUTRAL = 2, _("neutral")
    HAPPY = 3, _("happy")


class SessionMetric(models.Model):
    """One kiosk session: the path it started on, the paths it took, its outcome, turns, fallbacks and cost, and
    how the conversation went (visitor turns, re-asks, corrections, time to complete, the visitor's rating)."""

    session_id = models.CharField(_("session id"), max_length=64, unique=True)
    started_at = models.DateTimeField(_("started at"), db_index=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True, db_index=True)
    mode = models.CharField(_("started on"), max_length=8, choices=Mode.choices)
    reason = models.CharField(_("routing reason"), max_length=64, blank=True)
    paths = models.CharField(_("paths taken"), max_length=32, blank=True, help_text=_("e.g. realtime,legacy"))
    outcome = models.CharField(_("outcome"), max_length=12, choices=Outcome.choices, blank=True)
    error = models.CharField(_("error"), max_length=200, blank=True)
    turns = models.PositiveIntegerField(_("turns"), default=0)
    fallbacks = models.PositiveIntegerField(_("fallbacks"), default=0)
    cost_usd = models.DecimalField(_("cost (USD)"), default=Decimal(0), **USD_FIELD)
    visitor_turns = models.PositiveIntegerField(
        _("visitor turns"), default=0, help_text=_("What the visitor said before the reception finished.")
    )
    reasks = models.PositiveIntegerField(
        _("re-asks"), default=0, help_text=_("Questions asked again after an unclear answer.")
    )
    corrections = models.PositiveIntegerField(
        _("corrections"), default=0, help_text=_("Details the visitor corrected.")
    )
    seconds_to_complete = models.FloatField(
        _("time to complete (s)"), null=True, blank=True, help_text=_("From the greeting to the end of the reception.")
    )
    satisfaction = models.PositiveSmallIntegerField(
        _("satisfaction"), null=True, blank=True, choices=Satisfaction.choices
    )

    class Meta:
        verbose_name = _("session")
        verbose_name_plural = _("sessions")
        ordering = ["-started_at"]
        permissions = [("view_personal_data", _("Can view transcripts and visitor details"))]

    def __str__(self) -> str:
        return self.session_id


class MetricsDashboard(SessionMetric):
    """The admin index entry of the operations dashboard (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("operations dashboard")
        verbose_name_plural = _("operations dashboard")


class CostBucket(models.Model):
    """Realtime spend per minute; the rolling hour is the last 60 buckets."""

    minute = models.DateTimeField(_("minute"), unique=True)
    usd = models.DecimalField(_("USD"), max_digits=14, decimal_places=6, default=0)

    class Meta:
        db_table = "fallback_costbucket"  # created by the fallback app, which held the ledger first
        verbose_name = _("cost per minute")
        verbose_name_plural = _("cost per minute")
        ordering = ["-minute"]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M}: {self.usd} USD"


class CostReservation(models.Model):
    """Realtime spend held for a session in progress, so concurrent admissions cannot overshoot the hourly limit.

    Open while ``settled_at`` is empty and ``expires_at`` is ahead (a dead process's hold lapses by itself);
    the turns' actual cost, added to the CostBucket rows, is also counted in ``consumed_usd``, so only the
    unused part ``max(usd - consumed_usd, 0)`` is held on top of the spend.
    """

    session_id = models.CharField(_("session id"), max_length=64, unique=True)
    usd = models.DecimalField(_("reserved USD"), max_digits=14, decimal_places=6)
    consumed_usd = models.DecimalField(_("spent so far, USD"), max_digits=14, decimal_places=6, default=0)
    created_at = models.DateTimeField(_("reserved at"), db_index=True)
    expires_at = models.DateTimeField(_("expires at"), db_index=True)
    settled_at = models.DateTimeField(_("settled at"), null=True, blank=True)

    class Meta:
        db_table = "fallback_costreservation"
        verbose_name = _("cost reservation")
        verbose_name_plural = _("cost reservations")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.usd} USD"


class AlertName(models.TextChoices):
    COST = "cost", _("cost per hour")
    ERROR_RATE = "error_rate", _("error rate")


class AlertState(models.Model):
    """One alert shared by every process; raising and clearing are conditional UPDATEs (one sender each)."""

    name = models.CharField(_("alert"), max_length=16, choices=AlertName.choices, unique=True)
    active = models.BooleanField(_("active"), default=False)
    value = models.FloatField(_("last value"), default=0)
    threshold = models.FloatField(_("threshold"), default=0)
    message = models.CharField(_("message"), max_length=300, blank=True)
    episodes = models.PositiveIntegerField(_("episodes"), default=0)
    raised_at = models.DateTimeField(_("raised at"), null=True, blank=True)
    cleared_at = models.DateTimeField(_("cleared at"), null=True, blank=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {'active' if self.active else 'clear'}"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_expiry() -> datetime:
    """When a token issued now expires (API_TOKEN_TTL_DAYS)."""
    return timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS)


class ApiToken(models.Model):
    """A REST API token of a staff user; only its SHA-256 is stored (shown once by create_api_token)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    key_prefix = models.CharField(_("key prefix"), max_length=8, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"), default=token_expiry)
    last_used_at = models.DateTimeField(
        _("last used at"), null=True, blank=True, help_text=_("Updated at most once a minute.")
    )

    history = AuditedHistory(excluded_fields=["key_hash", "last_used_at"])

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} ({self.key_prefix}…)"

    @classmethod
    def issue(cls, user: models.Model) -> tuple[ApiToken, str]:
        """Create a token for a staff user; returns the row and the raw key (never stored)."""
        if not (user.is_active and user.is_staff):
            raise ValueError(f"{user} is not an active staff user; only staff may hold API tokens.")
        raw = secrets.token_urlsafe(32)
        return cls.objects.create(user=user, key_prefix=raw[:8], key_hash=hash_token(raw)), raw
