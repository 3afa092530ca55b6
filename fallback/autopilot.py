"""The rollout autopilot: with auto_promote on, it promotes one stage when every promotion gate is green and
demotes one stage when a guard opens during the stage (at once: it listens to ``signals.guard_tripped``).
Every change is an audited ``set_stage`` through ``emergency.apply_action``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .emergency import ActionError, apply_action
from .gates import gates_summary, promotion_gates
from .models import STAGE_ORDER, EmergencyState, GuardState, GuardStatus, RolloutConfig

logger = logging.getLogger(__name__)

AUTOPILOT_ACTOR = "system:autopilot"


def _next_stage(stage: str) -> str | None:
    if stage not in STAGE_ORDER or stage == STAGE_ORDER[-1]:
        return None
    return STAGE_ORDER[STAGE_ORDER.index(stage) + 1]


def _previous_stage(stage: str) -> str | None:
    if stage not in STAGE_ORDER or stage == STAGE_ORDER[0]:
        return None
    return STAGE_ORDER[STAGE_ORDER.index(stage) - 1]


def _tripped_since_stage(config: RolloutConfig) -> list[GuardState]:
    """Guards open now that opened after the stage was entered (each trip demotes once, not on every run)."""
    guards = GuardState.objects.filter(state=GuardStatus.OPEN)
    if config.stage_entered_at is not None:
        guards = guards.filter(opened_at__gt=config.stage_entered_at)
    return list(guards)


def _demote(config: RolloutConfig, now: datetime) -> str | None:
    """Demote one stage (audited) if a guard opened during the current stage and a lower stage exists."""
    tripped = _tripped_since_stage(config)
    lower = _previous_stage(config.stage)
    if not tripped or lower is None:
        return None
    opened = ", ".join(f"{g.name} ({g.last_reason})" if g.last_reason else g.name for g in tripped)
    reason = f"guard open: {opened}"[:500]
    apply_action("set_stage", actor=AUTOPILOT_ACTOR, reason=reason, now=now, stage=lower)
    return f"demoted {config.stage} -> {lower}: {reason}"


def autopilot(now: datetime | None = None) -> str | None:
    """With auto_promote on: demote one stage when a guard opened during this stage, else promote one stage
    when every gate is green. Returns what it did (one line) or None. Every change is an audited set_stage.
    """
    now = now or timezone.now()
    config = RolloutConfig.load()
    if not config.auto_promote or not config.stage:
        return None
    if _tripped_since_stage(config):
        return _demote(config, now)
    higher = _next_stage(config.stage)
    if higher is None or EmergencyState.load().active:
        return None
    gates = promotion_gates(now, config=config)
    if not all(gate.passed for gate in gates):
        return None
    reason = f"every gate green: {gates_summary(gates)}"[:500]
    try:
        apply_action("set_stage", actor=AUTOPILOT_ACTOR, reason=reason, now=now, stage=higher)
    except ActionError as exc:  # the state moved between our read and the locked re-check
        logger.warning("autopilot promotion to %s refused: %s", higher, exc)
        return None
    return f"promoted {config.stage} -> {higher}: {reason}"


def autopilot_idle_reason(now: datetime | None = None) -> str:
    """Why autopilot changed nothing (for the command's one line)."""
    config = RolloutConfig.load()
    if not config.auto_promote:
        return "auto_promote is off"
    if not config.stage:
        return "no named stage (custom percentage)"
    if _tripped_since_stage(config):
        return f"guard open, stage {config.stage} is the lowest"
    if _next_stage(config.stage) is None:
        return f"stage {config.stage} is the last"
    if EmergencyState.load().active:
        return "emergency active"
    by_reason: dict[str, list[str]] = {}
    for gate in promotion_gates(now, config=config):
        if not gate.passed:
            by_reason.setdefault(gate.reason, []).append(gate.name)
    waiting = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())
    return f"stage {config.stage}; waiting on {waiting}" if waiting else f"stage {config.stage}"


def demote_on_trip(sender: Any, *, name: str, now: datetime, **kwargs: Any) -> None:
    """Receiver of ``guard_tripped`` (a guard has just opened): with auto_promote on, demote one stage at once
    (never promotes, never raises: the guard is open either way and routing already keeps new sessions off
    Realtime)."""
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's transaction usable
            config = RolloutConfig.load()
            done = _demote(config, now) if config.auto_promote and config.stage else None
    except Exception:
        logger.exception("autopilot demotion after guard %s tripped failed", name)
        return
    if done:
        logger.warning("autopilot after guard %s tripped: %s", name, done)
