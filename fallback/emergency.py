"""The one service behind every manual and emergency action (admin, commands, later the REST API).

Each call writes the state change, bumps the config version and appends the audit row in one
transaction; after commit, emergency changes are broadcast to every live session in every process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.session_ids import SESSION_ID_PATTERN

from .bucketing import percent_to_bp
from .gates import promotion_gates
from .guards import reset_guard_row
from .models import (
    STAGE_ORDER,
    STAGE_PLAN,
    AllowlistEntry,
    AuditEntry,
    EmergencyState,
    GuardName,
    GuardState,
    GuardStatus,
    RolloutConfig,
)

logger = logging.getLogger(__name__)

CONTROL_GROUP = "realtime-control"
CONTROL_MESSAGE_TYPE = "control.emergency"  # handled by a consumer method named control_emergency
COST_LIMIT_ACTION = "cost_limit"  # the hour's Realtime spend passed the limit: live sessions move at a turn boundary


class Action(StrEnum):
    FORCE_FALLBACK = "force_fallback"
    EMERGENCY_STOP = "emergency_stop"
    CLEAR_EMERGENCY_STOP = "clear_emergency_stop"
    RESUME = "resume"
    ENABLE = "enable"
    DISABLE = "disable"
    SET_ROLLOUT_PERCENTAGE = "set_rollout_percentage"
    SET_STAGE = "set_stage"
    SET_COST_LIMIT = "set_cost_limit"
    AUTO_PROMOTE_ON = "auto_promote_on"
    AUTO_PROMOTE_OFF = "auto_promote_off"
    USE_ENV_DEFAULTS = "use_env_defaults"
    ALLOWLIST_ADD = "allowlist_add"
    ALLOWLIST_REMOVE = "allowlist_remove"
    RESET_GUARD = "reset_guard"


EMERGENCY_ACTIONS = {Action.FORCE_FALLBACK, Action.EMERGENCY_STOP, Action.CLEAR_EMERGENCY_STOP, Action.RESUME}
# The one parameter each action needs (None: no parameter).
PARAMETER: dict[Action, str | None] = {
    Action.SET_ROLLOUT_PERCENTAGE: "percent",
    Action.SET_STAGE: "stage",
    Action.SET_COST_LIMIT: "cost_limit",
    Action.ALLOWLIST_ADD: "session_id",
    Action.ALLOWLIST_REMOVE: "session_id",
    Action.RESET_GUARD: "guard",
}
# Parameters an action may take besides its required one (at most one of them per call).
OPTIONAL: dict[Action, tuple[str, ...]] = {Action.ENABLE: ("percent", "stage")}


Changes = tuple[dict[str, Any], dict[str, Any]]  # (before, after) of the changed fields
Handler = Callable[[RolloutConfig, EmergencyState, str, str, datetime, bool, Any], Changes]


class ActionError(ValueError):
    """The action was refused: bad input, or a rule (stage order, soak time) forbids it."""


@dataclass(frozen=True)
class ActionResult:
    action: str
    audit_id: int
    before: dict[str, Any]
    after: dict[str, Any]
    config_version: int

    def summary(self) -> str:
        changes = ", ".join(
            f"{key}: {self.before.get(key)!r} -> {value!r}"
            for key, value in self.after.items()
            if key != "version" and self.before.get(key) != value
        )
        return f"{self.action} applied (config v{self.config_version}); {changes or 'no change'}."


def apply_action(
    action: Action | str,
    *,
    actor: str,
    reason: str,
    override: bool = False,
    now: datetime | None = None,
    **params: Any,
) -> ActionResult:
    """Apply one manual or emergency action, audited in the same transaction. Raises ActionError on bad input.

    ``params`` carries the action's one argument: percent (0-100), stage (s1/s10/s50/s100),
    cost_limit (USD), session_id, or guard. ``enable`` may take a percent or a stage: both fields then
    change in the one transaction, audit row and version bump. ``override`` lets a stage promotion skip
    its gate (audited).
    """
    try:
        action = Action(action)
    except ValueError:
        raise ActionError(f"Unknown action {action!r}; expected one of {', '.join(Action)}.") from None
    reason, actor = (reason or "").strip(), (actor or "").strip()
    if not reason:
        raise ActionError("A reason is required for every rollout or emergency action.")
    if len(reason) > 500:
        raise ActionError(f"The reason is {len(reason)} characters long; keep it to 500.")
    if not actor or len(actor) > 150:
        raise ActionError("An actor (user:<name>, cli:<user> or system:<part>, at most 150 characters) is required.")
    wanted, optional = PARAMETER.get(action), OPTIONAL.get(action, ())
    extra = set(params) - {wanted, *optional}
    if extra:
        raise ActionError(f"{action} takes no {', '.join(sorted(extra))}.")
    if wanted and params.get(wanted) in (None, ""):
        raise ActionError(f"{action} needs {wanted}.")
    given = [(name, params[name]) for name in optional if params.get(name) not in (None, "")]
    if len(given) > 1:
        raise ActionError(f"{action} takes a {' or a '.join(optional)}, not both.")
    value = params.get(wanted) if wanted else (given[0] if given else None)
    now = now or timezone.now()

    with transaction.atomic():
        RolloutConfig.load()
        EmergencyState.load()
        config = RolloutConfig.objects.select_for_update().get(pk=1)
        emergency = EmergencyState.objects.select_for_update().get(pk=1)
        before, after = _HANDLERS[action](config, emergency, actor, reason, now, override, value)
        RolloutConfig.objects.filter(pk=config.pk).update(version=F("version") + 1, updated_by=actor, updated_at=now)
        version = RolloutConfig.objects.values_list("version", flat=True).get(pk=config.pk)
        entry = AuditEntry.objects.create(
            actor=actor, action=action, reason=reason, before=before, after={**after, "version": version}
        )
        if action in EMERGENCY_ACTIONS:
            message = emergency_message(
                str(action), emergency.emergency_stop, emergency.force_fallback, reason, actor, config_version=version
            )
            transaction.on_commit(lambda: broadcast(message))
    logger.warning("%s by %s (%s): %s -> %s", action, actor, reason, before, after)
    return ActionResult(str(action), entry.pk, before, after, version)


def emergency_message(
    action: str, emergency_stop: bool, force_fallback: bool, reason: str, actor: str, **extra: Any
) -> dict[str, Any]:
    """The control message live sessions act on (a consumer's ``control_emergency``); a stop drains them."""
    return {
        "type": CONTROL_MESSAGE_TYPE,
        "action": action,
        "emergency_stop": emergency_stop,
        "force_fallback": force_fallback,
        "drain_live_sessions": emergency_stop,
        "reason": reason,
        "actor": actor,
        **extra,
    }


def prepare_broadcast() -> None:
    """Set the channel layer up and connect it before an emergency action, so the broadcast leaves the moment the
    action commits: a command's first broadcast spent ~0.3 s on that after the stop was already decided."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(f"{CONTROL_GROUP}.warm-up", {"type": "noop"})  # a group nobody is in


def broadcast(message: dict[str, Any]) -> None:
    """Send a control message to every live session (all processes, given a shared channel layer)."""
    layer = get_channel_layer()
    if layer is None:
        logger.error("no channel layer configured; live sessions will see %s only when they next check", message)
        return
    try:
        async_to_sync(layer.group_send)(CONTROL_GROUP, {**message, "sent_at": time.time()})
    except Exception:  # the state is committed; sessions starting now read it from the database anyway
        logger.exception("broadcast of %s failed", message.get("action"))


def _emergency_fields(emergency: EmergencyState) -> dict[str, Any]:
    return {"force_fallback": emergency.force_fallback, "emergency_stop": emergency.emergency_stop}


def _force_fallback(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    before = _emergency_fields(emergency)
    if not emergency.force_fallback:
        emergency.force_fallback_since = now
    emergency.force_fallback, emergency.force_fallback_reason, emergency.force_fallback_actor = True, reason, actor
    emergency.save()
    return before, _emergency_fields(emergency)


def _emergency_stop(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    before = _emergency_fields(emergency)
    if not emergency.emergency_stop:
        emergency.stop_since = now
    emergency.emergency_stop, emergency.stop_reason, emergency.stop_actor = True, reason, actor
    emergency.save()
    return before, _emergency_fields(emergency)


def _clear_stop(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    before = _emergency_fields(emergency)
    emergency.emergency_stop, emergency.stop_reason, emergency.stop_actor, emergency.stop_since = False, "", "", None
    emergency.save()
    return before, _emergency_fields(emergency)


def _resume(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    before = _emergency_fields(emergency)
    emergency.force_fallback, emergency.force_fallback_reason = False, ""
    emergency.force_fallback_actor, emergency.force_fallback_since = "", None
    emergency.save()
    _clear_stop(config, emergency, actor, reason, now, override, value)
    return before, _emergency_fields(emergency)


def _set_flag(field: str, on: bool) -> Handler:
    """A handler that switches one boolean of the rollout config (enabled, auto_promote)."""

    def handler(
        config: RolloutConfig,
        emergency: EmergencyState,
        actor: str,
        reason: str,
        now: datetime,
        override: bool,
        value: Any,
    ) -> Changes:
        before = {field: getattr(config, field)}
        setattr(config, field, on)
        config.save(update_fields=[field])
        return before, {field: on}

    return handler


def _enable(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    """Switch Realtime on; with ``("percent", N)`` or ``("stage", s)`` also set the share, in the same change."""
    before, after = {"enabled": config.enabled}, {"enabled": True}
    if value is not None:
        name, target = value
        share = _set_percentage if name == "percent" else _set_stage
        share_before, share_after = share(config, emergency, actor, reason, now, override, target)
        before, after = {**before, **share_before}, {**after, **share_after}
    config.enabled = True
    config.save(update_fields=["enabled"])
    return before, after


def _set_percentage(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    try:
        percent_bp = percent_to_bp(float(value))
    except (TypeError, ValueError) as exc:
        raise ActionError(f"Invalid rollout percentage {value!r}: give a number from 0 to 100.") from exc
    before = {"percent": _percent(config.percent_bp), "stage": config.stage}
    config.percent_bp, config.stage, config.stage_entered_at = percent_bp, "", None
    config.save(update_fields=["percent_bp", "stage", "stage_entered_at"])
    return before, {"percent": percent_bp / 100, "stage": ""}


def _set_stage(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    if value not in STAGE_PLAN:
        raise ActionError(f"Unknown stage {value!r}; expected one of {', '.join(STAGE_ORDER)}.")
    gate = _promotion_refusal(config, value, now)
    if gate and not override:
        raise ActionError(f"Stage {value} refused: {gate} (an explicit override, with a reason, skips this gate).")
    before = {"percent": _percent(config.percent_bp), "stage": config.stage}
    config.stage, config.percent_bp, config.stage_entered_at = value, STAGE_PLAN[value][0], now
    config.save(update_fields=["stage", "percent_bp", "stage_entered_at"])
    after = {"percent": config.percent_bp / 100, "stage": value}
    if gate:
        after["override"] = gate
    return before, after


def _promotion_refusal(config: RolloutConfig, stage: str, now: datetime) -> str:
    """Why moving to ``stage`` is not allowed yet ('' if it is); going back is always allowed.

    Entering the first stage needs closed guards; every later promotion needs every promotion gate
    (soak, guards, Realtime against Legacy over the soak: see fallback.gates) to pass.
    """
    target = STAGE_ORDER.index(stage)
    current = STAGE_ORDER.index(config.stage) if config.stage else -1
    if target <= current:
        return ""
    if target > current + 1:
        return f"stages cannot be skipped (next is {STAGE_ORDER[current + 1]})"
    if current < 0:  # nothing to compare yet: Realtime starts at the first stage
        not_closed = list(GuardState.objects.exclude(state=GuardStatus.CLOSED).values_list("name", flat=True))
        return f"guards not closed: {', '.join(not_closed)}" if not_closed else ""
    failed = [gate for gate in promotion_gates(now, config=config) if not gate.passed]
    return "; ".join(f"{gate.name}: {gate.reason}" for gate in failed)


def _set_cost_limit(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    try:
        limit = float(value)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"Invalid cost limit {value!r}: give a number of USD per hour.") from exc
    if not 0 <= limit < 10**8:
        raise ActionError(f"The cost limit must be 0 or more USD per hour, not {value!r}.")
    before = {"cost_limit_per_hour": None if config.cost_limit_per_hour is None else float(config.cost_limit_per_hour)}
    config.cost_limit_per_hour = round(limit, 2)
    config.save(update_fields=["cost_limit_per_hour"])
    return before, {"cost_limit_per_hour": round(limit, 2)}


def _use_env_defaults(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    cost = None if config.cost_limit_per_hour is None else float(config.cost_limit_per_hour)
    before = {"enabled": config.enabled, "percent": _percent(config.percent_bp), "stage": config.stage}
    before["cost_limit_per_hour"] = cost
    config.enabled = config.percent_bp = config.cost_limit_per_hour = config.stage_entered_at = None
    config.stage = ""
    config.save(update_fields=["enabled", "percent_bp", "cost_limit_per_hour", "stage", "stage_entered_at"])
    return before, {"enabled": None, "percent": None, "stage": "", "cost_limit_per_hour": None}


def _allowlist_add(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    session_id = str(value).strip()
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ActionError(f"Invalid session id {session_id!r}: 1 to 64 of A-Z, a-z, 0-9, '_' and '-'.")
    _entry, created = AllowlistEntry.objects.get_or_create(
        session_id=session_id, defaults={"added_by": actor, "note": reason[:200]}
    )
    return {"allowlisted": session_id if not created else None}, {"allowlisted": session_id}


def _allowlist_remove(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    deleted, _ = AllowlistEntry.objects.filter(session_id=value).delete()
    if not deleted:
        raise ActionError(f"Session {value!r} is not on the allowlist.")
    return {"allowlisted": value}, {"allowlisted": None}


def _reset_guard(
    config: RolloutConfig, emergency: EmergencyState, actor: str, reason: str, now: datetime, override: bool, value: Any
) -> Changes:
    if value not in GuardName.values:
        raise ActionError(f"Unknown guard {value!r}; expected one of {', '.join(GuardName.values)}.")
    before, after = reset_guard_row(value, now)
    return {"guard": value, **before}, {"guard": value, **after}


def _percent(percent_bp: int | None) -> float | None:
    return None if percent_bp is None else percent_bp / 100


_HANDLERS: dict[Action, Handler] = {
    Action.FORCE_FALLBACK: _force_fallback,
    Action.EMERGENCY_STOP: _emergency_stop,
    Action.CLEAR_EMERGENCY_STOP: _clear_stop,
    Action.RESUME: _resume,
    Action.ENABLE: _enable,
    Action.DISABLE: _set_flag("enabled", False),
    Action.SET_ROLLOUT_PERCENTAGE: _set_percentage,
    Action.SET_STAGE: _set_stage,
    Action.SET_COST_LIMIT: _set_cost_limit,
    Action.AUTO_PROMOTE_ON: _set_flag("auto_promote", True),
    Action.AUTO_PROMOTE_OFF: _set_flag("auto_promote", False),
    Action.USE_ENV_DEFAULTS: _use_env_defaults,
    Action.ALLOWLIST_ADD: _allowlist_add,
    Action.ALLOWLIST_REMOVE: _allowlist_remove,
    Action.RESET_GUARD: _reset_guard,
}
