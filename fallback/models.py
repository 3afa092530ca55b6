"""Rollout config, allowlist, routing decisions, guard states, fallback events, emergency state, audit.

Everything several server processes must agree on lives here; nothing is cached per process.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from metrics.models import Mode

DEFAULT_SALT = "realtime-voice-v1"
SINGLETON_ID = 1


class Stage(models.TextChoices):
    """Rollout stages; each carries its percentage in basis points and a minimum soak time."""

    CUSTOM = "", _("custom percentage")
    S1 = "s1", _("1 %")
    S10 = "s10", _("10 %")
    S50 = "s50", _("50 %")
    S100 = "s100", _("100 %")


# stage -> (percent in basis points, minimum soak before the next stage)
STAGE_PLAN: dict[str, tuple[int, timedelta]] = {
    Stage.S1: (100, timedelta(hours=24)),
    Stage.S10: (1000, timedelta(hours=24)),
    Stage.S50: (5000, timedelta(hours=24)),
    Stage.S100: (10000, timedelta(0)),
}
STAGE_ORDER: list[str] = [Stage.S1, Stage.S10, Stage.S50, Stage.S100]


class RolloutConfig(models.Model):
    """The single row of admin overrides; a null field means "use the environment default"."""

    enabled = models.BooleanField(
        _("enabled (override)"), null=True, blank=True, help_text=_("Empty: FEATURE_REALTIME_MODE_ENABLED decides.")
    )
    percent_bp = models.PositiveIntegerField(
        _("percentage in basis points (override)"),
        null=True,
        blank=True,
        validators=[MaxValueValidator(10000)],
        help_text=_("0..10000 (1250 = 12.5 %). Empty: FEATURE_REALTIME_ROLLOUT_PERCENTAGE decides."),
    )
    cost_limit_per_hour = models.DecimalField(
        _("cost limit per hour, USD (override)"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=_("Empty: REALTIME_COST_LIMIT_PER_HOUR decides."),
    )
    stage = models.CharField(_("stage"), max_length=8, choices=Stage.choices, blank=True, default=Stage.CUSTOM)
    stage_entered_at = models.DateTimeField(_("stage entered at"), null=True, blank=True)
    auto_promote = models.BooleanField(
        _("automatic promotion"),
        default=False,
        help_text=_("Promote one stage when every promotion gate is green; demote one stage when a guard opens."),
    )
    salt = models.CharField(
        _("bucketing salt"), max_length=64, default=DEFAULT_SALT, help_text=_("Changing it reshuffles every session.")
    )
    version = models.PositiveBigIntegerField(
        _("config version"), default=0, help_text=_("Raised by every change; each decision records it.")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.CharField(_("updated by"), max_length=150, blank=True)

    class Meta:
        verbose_name = _("rollout config")
        verbose_name_plural = _("rollout config")

    def __str__(self) -> str:
        return f"rollout config v{self.version}"

    @classmethod
    def load(cls) -> RolloutConfig:
        """The singleton row, created with env defaults (all overrides empty) on first use."""
        return cls.objects.get_or_create(pk=SINGLETON_ID)[0]


class AllowlistEntry(models.Model):
    """A session id that gets Realtime whenever Realtime is enabled and no guard or emergency blocks it."""

    session_id = models.CharField(_("session id"), max_length=64, unique=True)
    note = models.CharField(_("note"), max_length=200, blank=True)
    added_by = models.CharField(_("added by"), max_length=150)
    added_at = models.DateTimeField(_("added at"), auto_now_add=True)

    class Meta:
        verbose_name = _("allowlisted session")
        verbose_name_plural = _("allowlisted sessions")
        ordering = ["session_id"]

    def __str__(self) -> str:
        return self.session_id


class RoutingDecision(models.Model):
    """Which voice path a session got, why, and under which config version: one row per session, its first
    decision, kept for its whole life (a later move to Legacy is a FallbackEvent)."""

    session_id = models.CharField(_("session id"), max_length=64, unique=True)
    mode = models.CharField(_("mode"), max_length=8, choices=Mode.choices)
    reason = models.CharField(_("reason"), max_length=64)
    detail = models.CharField(_("detail"), max_length=200, blank=True)
    bucket = models.PositiveSmallIntegerField(_("bucket (basis points)"), null=True, blank=True)
    config_version = models.PositiveBigIntegerField(_("config version"))
    decided_at = models.DateTimeField(_("decided at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("routing decision")
        verbose_name_plural = _("routing decisions")
        ordering = ["-decided_at"]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.mode} ({self.reason})"


class GuardName(models.TextChoices):
    """The automatic guards, in the order the policy consults them."""

    COST = "cost", _("cost per hour")
    ERROR_RATE = "error_rate", _("error rate")
    LATENCY = "latency", _("latency")
    CONNECTION = "connection", _("connection")


class GuardStatus(models.TextChoices):
    CLOSED = "closed", _("closed (Realtime allowed)")
    OPEN = "open", _("open (Realtime blocked)")
    HALF_OPEN = "half_open", _("half-open (probing)")


class GuardState(models.Model):
    """One circuit breaker shared by every process; transitions are compare-and-set UPDATEs."""

    name = models.CharField(_("guard"), max_length=16, choices=GuardName.choices, unique=True)
    state = models.CharField(_("state"), max_length=10, choices=GuardStatus.choices, default=GuardStatus.CLOSED)
    trip_count = models.PositiveIntegerField(
        _("recent trips"), default=0, help_text=_("Trips within the trip memory; the cooldown doubles with each.")
    )
    last_trip_at = models.DateTimeField(_("last trip at"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)
    cooldown_seconds = models.PositiveIntegerField(_("cooldown (s)"), default=0)
    retry_at = models.DateTimeField(_("probing allowed from"), null=True, blank=True)
    half_open_since = models.DateTimeField(_("half-open since"), null=True, blank=True)
    probe_budget = models.PositiveIntegerField(_("probe sessions left"), default=0)
    probe_successes = models.PositiveIntegerField(_("successful probes"), default=0)
    window_started_at = models.DateTimeField(_("window started at"), null=True, blank=True)
    window_samples = models.PositiveIntegerField(_("samples in window"), default=0)
    window_failures = models.PositiveIntegerField(_("failures in window"), default=0)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    last_reason = models.CharField(_("last transition reason"), max_length=200, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("guard")
        verbose_name_plural = _("guards")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"


class FallbackReason(models.TextChoices):
    CONNECTION_ERROR = "CONNECTION_ERROR", _("connection error")
    UPSTREAM_ERROR = "UPSTREAM_ERROR", _("upstream error")
    LATENCY = "LATENCY", _("latency")
    COST_LIMIT = "COST_LIMIT", _("cost limit")
    EMERGENCY_STOP = "EMERGENCY_STOP", _("emergency stop")


class FallbackEvent(models.Model):
    """A live session moved from Realtime to Legacy (written before the move is acted on)."""

    session_id = models.CharField(_("session id"), max_length=64, db_index=True)
    reason = models.CharField(_("reason"), max_length=20, choices=FallbackReason.choices)
    detail = models.CharField(_("detail"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("fallback event")
        verbose_name_plural = _("fallback events")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.reason}"


class EmergencyState(models.Model):
    """The emergency flags (single row): force fallback sends new sessions to Legacy; stop drains live ones too."""

    force_fallback = models.BooleanField(_("force fallback"), default=False)
    force_fallback_reason = models.CharField(_("force fallback reason"), max_length=500, blank=True)
    force_fallback_actor = models.CharField(_("force fallback set by"), max_length=150, blank=True)
    force_fallback_since = models.DateTimeField(_("force fallback since"), null=True, blank=True)
    emergency_stop = models.BooleanField(_("emergency stop"), default=False)
    stop_reason = models.CharField(_("stop reason"), max_length=500, blank=True)
    stop_actor = models.CharField(_("stop set by"), max_length=150, blank=True)
    stop_since = models.DateTimeField(_("stop since"), null=True, blank=True)

    class Meta:
        verbose_name = _("emergency state")
        verbose_name_plural = _("emergency state")

    def __str__(self) -> str:
        if self.emergency_stop:
            return "emergency stop"
        return "force fallback" if self.force_fallback else "normal"

    @classmethod
    def load(cls) -> EmergencyState:
        return cls.objects.get_or_create(pk=SINGLETON_ID)[0]

    @property
    def active(self) -> bool:
        return self.emergency_stop or self.force_fallback


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit row."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit entries are append-only; they cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit entries are append-only; they cannot be deleted.")


class AuditEntry(models.Model):
    """Who changed what, when and why, with the values before and after (append-only)."""

    actor = models.CharField(_("actor"), max_length=150, help_text=_("user:<name>, cli:<os user> or system:<part>."))
    action = models.CharField(_("action"), max_length=40, db_index=True)
    reason = models.CharField(_("reason"), max_length=500)
    before = models.JSONField(_("before"), default=dict)
    after = models.JSONField(_("after"), default=dict)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit trail")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit entries are append-only; they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit entries are append-only; they cannot be deleted.")
