"""The routing policy: one pure function that picks Realtime or Legacy for a new session.

On any doubt (missing state, bad config, an exception) it answers Legacy, with the reason recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .bucketing import BASIS_POINTS, bucket_bp
from .config import ENVIRONMENT_KILL_SWITCH, EmergencySnapshot, ResolvedConfig
from .guards import GuardSnapshot
from .models import GuardName

logger = logging.getLogger(__name__)

# The order in which guards are consulted; the first one that blocks names the reason.
GUARD_ORDER: tuple[str, ...] = (GuardName.COST, GuardName.ERROR_RATE, GuardName.LATENCY, GuardName.CONNECTION)


@dataclass(frozen=True)
class Decision:
    """The voice path of one session and why. ``probe_guards``: half-open guards this session must probe."""

    mode: Literal["realtime", "legacy"]
    reason: str
    config_version: int
    detail: str = ""
    bucket: int | None = None
    probe_guards: tuple[str, ...] = ()
    pinned: bool = False  # the session's first decision, returned again (a reconnect)

    @property
    def realtime(self) -> bool:
        return self.mode == "realtime"


def legacy(reason: str, config_version: int, detail: str = "", bucket: int | None = None) -> Decision:
    return Decision("legacy", reason, config_version, detail[:200], bucket)


def decide(
    config: ResolvedConfig | None,
    guards: Mapping[str, GuardSnapshot] | None,
    emergency: EmergencySnapshot | None,
    session_id: str | None,
    *,
    now: datetime,
) -> Decision:
    """Realtime or Legacy for ``session_id``; never raises."""
    version = config.version if isinstance(config, ResolvedConfig) else 0
    try:
        return _evaluate(config, guards, emergency, session_id, now)
    except Exception as exc:  # the policy must never take a session down
        logger.exception("routing policy failed for session %r", session_id)
        return legacy("policy_error", version, f"{type(exc).__name__}: {exc}")


def _evaluate(
    config: ResolvedConfig | None,
    guards: Mapping[str, GuardSnapshot] | None,
    emergency: EmergencySnapshot | None,
    session_id: str | None,
    now: datetime,
) -> Decision:
    if config is None:
        return legacy("config_missing", 0)
    version = config.version
    if emergency is None:
        return legacy("emergency_state_missing", version)

    # 1. Emergency stop beats everything, the allowlist included (live sessions are drained too).
    if emergency.emergency_stop:
        return legacy("emergency_stop", version, f"{emergency.actor}: {emergency.reason}")
    # 2. Force fallback (emergency rollback): new sessions go Legacy; the rollout config is kept for resuming.
    if emergency.force_fallback:
        return legacy("force_fallback", version, f"{emergency.actor}: {emergency.reason}")
    # 3. The environment's kill switch beats the admin (FEATURE_REALTIME_MODE_ENABLED=false set explicitly).
    if config.disabled_by_environment:
        return legacy("disabled_by_environment", version, f"{ENVIRONMENT_KILL_SWITCH} in the environment")
    # 4. Realtime switched off (env default or admin override).
    if config.enabled.value is not True:
        return legacy("disabled", version, f"enabled={config.enabled.value} ({config.enabled.source})")

    # 5. Guards in fixed order: an open one blocks; a cooled-down one lets this session in only as a probe.
    if guards is None:
        return legacy("guard_state_missing", version)
    probes: list[str] = []
    for name in GUARD_ORDER:
        guard = guards.get(name)
        if guard is None:
            return legacy("guard_state_missing", version, name)
        admission = guard.admission(now)
        if admission == "block":
            return legacy(f"guard_open:{name}", version, guard.last_reason)
        if admission == "probe":
            probes.append(name)

    # 6. Without a session id there is neither allowlist nor bucket.
    if not session_id:
        return legacy("no_session_id", version)

    # 7. The allowlist bypasses the percentage only (never the stop, the switch or the guards).
    if session_id in config.allowlist.value:
        return _realtime("allowlist", version, "session is allowlisted", None, probes)

    # 8. The sticky percentage bucket: in iff bucket < percentage (basis points).
    percent = config.percent_bp.value
    if not isinstance(percent, int) or not 0 <= percent <= BASIS_POINTS:
        return legacy("config_invalid", version, f"percentage {percent!r} basis points")
    bucket = bucket_bp(config.salt, session_id)
    if bucket < percent:
        return _realtime("in_rollout", version, f"bucket {bucket} < {percent}", bucket, probes)
    return legacy("outside_rollout", version, f"bucket {bucket} >= {percent}", bucket)


def _realtime(reason: str, version: int, detail: str, bucket: int | None, probes: list[str]) -> Decision:
    if probes:
        return Decision("realtime", f"probe:{','.join(probes)}", version, f"{reason}; {detail}", bucket, tuple(probes))
    return Decision("realtime", reason, version, detail, bucket)
