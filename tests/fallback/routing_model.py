"""The plain model the routing state machine (test_routing_state_machine.py) checks the real services against:
the sessions, the cost reservations and spend, the connection guard, and the decision each new or returning
session must get by the documented order. Also the edge buckets and the ids that fall in them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.test import override_settings

from fallback import guards
from fallback.bucketing import bucket_bp
from fallback.emergency import apply_action
from fallback.models import DEFAULT_SALT, FallbackReason
from fallback.services import explain_session, record_fallback_event
from metrics.cost import estimate_session_cost

EDGE_BUCKETS = (0, 1, 2, 5000, 9998, 9999)
EDGE_PERCENTS = (0, 1, 2, 3, 5000, 5001, 9998, 9999, 10000)
LIMITS = ("0", "0.4", "0.5", "1", "1.5", "2", "3.3", "50")
TURN_SPEND = ("0.05", "0.2", "0.36", "0.5")  # USD; never more than one reservation (the estimate)
TTL = timedelta(seconds=1800)
START = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)
CONNECTION_PROBES, PROBES_TO_CLOSE, PROBE_TIMEOUT = 5, 3, timedelta(minutes=10)


@functools.cache
def ids_by_bucket(count: int = 2) -> dict[int, tuple[str, ...]]:
    """``count`` session ids for each bucket of EDGE_BUCKETS under the default salt, found by search."""
    found: dict[int, list[str]] = {bucket: [] for bucket in EDGE_BUCKETS}
    i = 0
    while any(len(ids) < count for ids in found.values()):
        session_id, i = f"edge-{i}", i + 1
        ids = found.get(bucket_bp(DEFAULT_SALT, session_id))
        if ids is not None and len(ids) < count:
            ids.append(session_id)
    return {bucket: tuple(ids) for bucket, ids in found.items()}


def act(action: str, **params) -> None:
    apply_action(action, actor="test:state-machine", reason="property test", **params)


@dataclass
class Session:
    first: tuple[str, str]  # (mode, reason) of the first decision: the one RoutingDecision row
    fell_back: str | None = None  # the FallbackEvent reason, once it moved to Legacy
    connected: bool = True

    @property
    def realtime(self) -> bool:
        return self.first[0] == "realtime" and self.fell_back is None


@dataclass
class Reservation:
    usd: Decimal
    expires_at: object
    consumed: Decimal = Decimal(0)
    settled: bool = False


@dataclass
class Connection:
    """The connection guard (the only one the machine trips; error rate stays closed, latency can break)."""

    state: str = "closed"
    retry_at: object = None
    half_open_since: object = None
    budget: int = 0
    successes: int = 0
    trips: int = 0
    last_trip_at: object = None


class RoutingModel:
    """What the services must do, predicted from the actions so far; the machine mixes it in."""

    def __init__(self) -> None:
        super().__init__()
        self._env_switch: override_settings | None = None
        self.now = START  # a fixed clock: the same draws give the same minute buckets on every replay
        self.estimate = estimate_session_cost(now=self.now)
        self.sessions: dict[str, Session] = {}
        self.counter = self.steps = 0
        self.stop = self.force = self.env_off = self.stop_unheard = False
        self.admin_enabled: bool | None = None
        self.admin_percent: int | None = None
        self.percent_broken = self.latency_broken = False
        self.admin_limit: Decimal | None = None
        self.allowlist: set[str] = set()
        self.cost_open = False
        self.cost_stale = False  # staff changed the limit or reset the cost guard since its last refresh
        self.connection = Connection()
        self.spend: dict[object, Decimal] = {}  # minute -> USD
        self.reservations: dict[str, Reservation] = {}
        self.ceiling = self.limit + self.estimate

    # -- model helpers ---------------------------------------------------------------------------

    @property
    def limit(self) -> Decimal:
        return Decimal("50") if self.admin_limit is None else self.admin_limit

    def spend_last_hour(self) -> Decimal:
        return sum((usd for minute, usd in self.spend.items() if minute > self.now - timedelta(hours=1)), Decimal(0))

    def committed(self) -> Decimal:
        held = sum(
            (max(r.usd - r.consumed, Decimal(0)) for r in self.reservations.values() if self.open_hold(r)), Decimal(0)
        )
        return self.spend_last_hour() + held

    def open_hold(self, reservation: Reservation | None) -> bool:
        return reservation is not None and not reservation.settled and reservation.expires_at > self.now

    def cost_guard_after_refresh(self) -> bool:
        spend, limit = float(self.spend_last_hour()), float(self.limit)
        if not self.cost_open and spend >= limit:
            return True
        if self.cost_open and spend < guards.COST_RECOVERY_RATIO * limit:
            return False
        return self.cost_open

    def refresh_cost_guard(self) -> None:
        """What `refresh_cost_guard` does; when the guard opens, every live Realtime session is moved."""
        was_open, self.cost_open, self.cost_stale = self.cost_open, self.cost_guard_after_refresh(), False
        if self.cost_open and not was_open:
            self.move_live_sessions(FallbackReason.COST_LIMIT)

    def move_live_sessions(self, reason: str) -> None:
        """The voice manager's part: each connected Realtime session moves to Legacy with one fallback event."""
        for session_id, session in self.sessions.items():
            if session.connected and session.realtime:
                record_fallback_event(session_id, reason, "moved by the live session")
                session.fell_back = reason

    def admissible(self, session_id: str) -> bool:
        if self.open_hold(self.reservations.get(session_id)):
            return True
        return self.committed() + self.estimate <= self.limit

    def hold(self, session_id: str) -> None:
        if not self.open_hold(self.reservations.get(session_id)):
            self.reservations[session_id] = Reservation(self.estimate, self.now + TTL)

    def connection_admission(self) -> str:
        guard = self.connection
        if guard.state == "closed":
            return "allow"
        if guard.state == "open":
            return "probe" if self.now >= guard.retry_at else "block"
        stale = self.now - guard.half_open_since >= PROBE_TIMEOUT
        return "probe" if guard.budget > 0 or stale else "block"

    def claim_probe(self) -> None:
        guard = self.connection
        if guard.state == "open" or self.now - guard.half_open_since >= PROBE_TIMEOUT:
            guard.state, guard.half_open_since, guard.budget, guard.successes = (
                "half_open",
                self.now,
                CONNECTION_PROBES - 1,
                0,
            )
        else:
            guard.budget -= 1

    def trip_connection(self) -> None:
        guard = self.connection
        recent = guard.last_trip_at is not None and self.now - guard.last_trip_at < guards.TRIP_MEMORY
        guard.trips = guard.trips + 1 if recent else 1
        cooldown = min(timedelta(minutes=10) * 2 ** (guard.trips - 1), timedelta(hours=2))
        guard.state, guard.retry_at, guard.last_trip_at = "open", self.now + cooldown, self.now
        guard.half_open_since, guard.budget, guard.successes = None, 0, 0

    def expected_new(self, session_id: str, *, record: bool) -> tuple[str, str]:
        """The first decision of a session never seen, by the documented order; ``record`` applies its effects."""
        if record:
            self.refresh_cost_guard()
            cost_open = self.cost_open
        else:
            cost_open = self.cost_guard_after_refresh()
        if self.stop:
            return "legacy", "emergency_stop"
        if self.force:
            return "legacy", "force_fallback"
        if self.env_off:
            return "legacy", "disabled_by_environment"
        if not self.admin_enabled:  # the environment's default is off
            return "legacy", "disabled"
        if cost_open:
            return "legacy", "guard_open:cost"
        if self.latency_broken:
            return "legacy", "policy_error"
        probe = self.connection_admission()
        if probe == "block":
            return "legacy", "guard_open:connection"
        percent = self.admin_percent or 0
        if session_id in self.allowlist:
            reason = "allowlist"
        elif self.percent_broken:
            return "legacy", "config_invalid"
        elif bucket_bp(DEFAULT_SALT, session_id) < percent:
            reason = "in_rollout"
        else:
            return "legacy", "outside_rollout"
        if not self.admissible(session_id):
            return "legacy", "cost_limit"
        if record:
            if probe == "probe":
                self.claim_probe()
            self.hold(session_id)
        return "realtime", "probe:connection" if probe == "probe" else reason

    def expected_return(self, session_id: str) -> tuple[str, str, bool]:
        """A reconnect: the first decision again, unless it fell back, is stopped, or its cost is refused."""
        session = self.sessions[session_id]
        if session.first[0] == "legacy":
            return (*session.first, True)
        if session.fell_back:
            return "legacy", f"fell_back:{session.fell_back.lower()}", False
        move = FallbackReason.EMERGENCY_STOP if self.stop else None
        if move is None:
            self.refresh_cost_guard()  # past the hour's limit, a return is a turn boundary
            if self.cost_open or not self.admissible(session_id):
                move = FallbackReason.COST_LIMIT
            else:
                self.hold(session_id)
                return (*session.first, True)
        session.fell_back = move  # the decision writes the one fallback event
        return "legacy", f"fell_back:{move.lower()}", False

    def _set_env_switch(self, off: bool) -> None:
        if self._env_switch is not None:
            self._env_switch.disable()
            self._env_switch = None
        if off:
            self._env_switch = override_settings(REALTIME_DISABLED_BY_ENVIRONMENT=True)
            self._env_switch.enable()
        self.env_off = off

    def new_session_id(self, edge: int | None) -> str:
        if edge is not None:
            session_id = ids_by_bucket()[edge][0]
            if session_id not in self.sessions:
                return session_id
        self.counter += 1
        return f"s-{self.counter}"

    def watch_ids(self) -> list[str]:
        """Ids never decided, one per edge bucket, plus two allowlistable ones: what the simulate box is asked."""
        return [ids[1] for ids in ids_by_bucket().values()]

    def explained(self) -> dict[str, tuple[str, str]]:
        return {
            sid: (d.mode, d.reason)
            for sid, d in ((sid, explain_session(sid, now=self.now)) for sid in self.watch_ids())
        }
