"""Effective rollout config: code default < environment < admin override < environment kill switch < emergency.

``FEATURE_REALTIME_MODE_ENABLED=false`` set explicitly in the environment is a kill switch: it holds Realtime
off whatever the admin says (left unset or empty, the admin decides).

Read fresh from the database at every session start; there is no per-process cache to go stale.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings

from .bucketing import percent_to_bp
from .models import SINGLETON_ID, AllowlistEntry, EmergencyState, RolloutConfig

Source = Literal["code", "env", "admin", "forced"]

# The code defaults of reception_project/settings.py, to tell "env" from "code" in the admin.
CODE_DEFAULTS: dict[str, Any] = {
    "FEATURE_REALTIME_MODE_ENABLED": False,
    "FEATURE_REALTIME_ROLLOUT_PERCENTAGE": 0.0,
    "FEATURE_REALTIME_ALLOWLIST_SESSIONS": [],
    "REALTIME_COST_LIMIT_PER_HOUR": 50.0,
}


ENVIRONMENT_KILL_SWITCH = "FEATURE_REALTIME_MODE_ENABLED=false"


@dataclass(frozen=True)
class Setting:
    """One effective value, where it came from, and the environment default beneath any override."""

    value: Any
    source: Source
    env_default: Any
    note: str = ""


@dataclass(frozen=True)
class EmergencySnapshot:
    force_fallback: bool = False
    emergency_stop: bool = False
    reason: str = ""
    actor: str = ""
    since: datetime | None = None

    @classmethod
    def from_row(cls, row: EmergencyState) -> EmergencySnapshot:
        if row.emergency_stop:
            return cls(row.force_fallback, True, row.stop_reason, row.stop_actor, row.stop_since)
        if row.force_fallback:
            return cls(True, False, row.force_fallback_reason, row.force_fallback_actor, row.force_fallback_since)
        return cls()

    @property
    def active(self) -> bool:
        return self.force_fallback or self.emergency_stop


@dataclass(frozen=True)
class ResolvedConfig:
    enabled: Setting
    percent_bp: Setting
    allowlist: Setting
    cost_limit_per_hour: Setting
    stage: str
    stage_entered_at: datetime | None
    salt: str
    version: int
    disabled_by_environment: bool = False

    def as_rows(self) -> list[tuple[str, Any, Source, Any, str]]:
        """(name, value, source, env default, note) for display in the admin and `realtime_status`."""
        rows = []
        for name in ("enabled", "percent_bp", "allowlist", "cost_limit_per_hour"):
            setting: Setting = getattr(self, name)
            value, default = setting.value, setting.env_default
            if name == "percent_bp":
                name, value, default = "percentage", value / 100, default / 100
            elif name == "allowlist":
                value, default = ", ".join(sorted(value)) or "-", ", ".join(sorted(default)) or "-"
            rows.append((name, value, setting.source, default, setting.note))
        return rows


def _env_source(name: str) -> Source:
    value = getattr(settings, name)
    return "env" if name in os.environ or value != CODE_DEFAULTS[name] else "code"


def resolve(
    row: RolloutConfig, allowlist_rows: Iterable[str], emergency: EmergencySnapshot | None = None
) -> ResolvedConfig:
    """Merge code/env defaults with the admin overrides in ``row``; an active emergency forces `enabled` off.

    Raises ValueError when the environment holds an out-of-range percentage (the policy turns it into Legacy).
    """
    env_enabled = bool(settings.FEATURE_REALTIME_MODE_ENABLED)
    env_percent_bp = percent_to_bp(float(settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE))
    env_allowlist = frozenset(s.strip() for s in settings.FEATURE_REALTIME_ALLOWLIST_SESSIONS if s.strip())

    disabled_by_environment = bool(settings.REALTIME_DISABLED_BY_ENVIRONMENT)
    if emergency is not None and emergency.active:
        kind = "emergency stop" if emergency.emergency_stop else "force fallback"
        enabled = Setting(False, "forced", env_enabled, f"{kind} by {emergency.actor}: {emergency.reason}")
    elif disabled_by_environment:
        admin = "" if row.enabled is None else f"; the admin's {'on' if row.enabled else 'off'} applies once unset"
        enabled = Setting(False, "forced", env_enabled, f"{ENVIRONMENT_KILL_SWITCH} in the environment{admin}")
    elif row.enabled is not None:
        enabled = Setting(row.enabled, "admin", env_enabled)
    else:
        enabled = Setting(env_enabled, _env_source("FEATURE_REALTIME_MODE_ENABLED"), env_enabled)

    if row.percent_bp is not None:
        note = f"stage {row.stage}" if row.stage else ""
        percent = Setting(row.percent_bp, "admin", env_percent_bp, note)
    else:
        percent = Setting(env_percent_bp, _env_source("FEATURE_REALTIME_ROLLOUT_PERCENTAGE"), env_percent_bp)

    admin_allowlist = frozenset(allowlist_rows)
    if admin_allowlist:
        allowlist = Setting(env_allowlist | admin_allowlist, "admin", env_allowlist, "union of env and admin entries")
    else:
        allowlist = Setting(env_allowlist, _env_source("FEATURE_REALTIME_ALLOWLIST_SESSIONS"), env_allowlist)

    cost = _cost_limit(row.cost_limit_per_hour)

    return ResolvedConfig(
        enabled=enabled,
        percent_bp=percent,
        allowlist=allowlist,
        cost_limit_per_hour=cost,
        stage=row.stage,
        stage_entered_at=row.stage_entered_at,
        salt=row.salt,
        version=row.version,
        disabled_by_environment=disabled_by_environment,
    )


def _cost_limit(admin_value: Decimal | None) -> Setting:
    env_cost = float(settings.REALTIME_COST_LIMIT_PER_HOUR)
    if admin_value is not None:
        return Setting(float(admin_value), "admin", env_cost)
    return Setting(env_cost, _env_source("REALTIME_COST_LIMIT_PER_HOUR"), env_cost)


def load_emergency() -> EmergencySnapshot:
    """The current emergency state, read from the database."""
    return EmergencySnapshot.from_row(EmergencyState.load())


def load_config(emergency: EmergencySnapshot | None = None) -> ResolvedConfig:
    """The effective config, read from the database (two small queries)."""
    allowlist = AllowlistEntry.objects.values_list("session_id", flat=True)
    return resolve(RolloutConfig.load(), allowlist, emergency)


def load_cost_limit() -> float:
    """The effective hourly Realtime cost limit in USD, as ``load_config`` gives it, in one small query (every
    priced response reads it)."""
    rows = RolloutConfig.objects.filter(pk=SINGLETON_ID).values_list("cost_limit_per_hour", flat=True)
    return _cost_limit(rows.first()).value
