"""The whole routing state under random sequences of actions (issue 11, item 6), and the bucket boundaries.

A hypothesis state machine drives the real services against the real database: admin and emergency
actions, the environment's kill switch, new sessions, drops and reconnects, guard trips and recoveries,
live Realtime turns that spend money, and time moving on. A plain model predicts every decision, the
guard states, the decision records and the hour's spend; the invariants are checked after every step.
The live voice manager is played by the machine: it moves a live Realtime session to Legacy (one
fallback event) on an emergency stop and when the cost guard opens, exactly as `voice.hybrid` does.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from fallback import guards
from fallback.bucketing import BASIS_POINTS, bucket_bp
from fallback.emergency import ActionError, apply_action
from fallback.models import (
    DEFAULT_SALT,
    STAGE_PLAN,
    CostReservation,
    FallbackEvent,
    FallbackReason,
    GuardName,
    GuardState,
    RolloutConfig,
    RoutingDecision,
)
from fallback.services import decide_for_session, explain_session, record_fallback_event
from metrics.cost import cost_limit_per_hour, estimate_session_cost, settle_session_cost

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_prices")]

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


@pytest.fixture
def routing_settings(settings):
    """The environment's defaults, whatever the machine's environment holds."""
    settings.FEATURE_REALTIME_MODE_ENABLED = False
    settings.REALTIME_DISABLED_BY_ENVIRONMENT = False
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 0.0
    settings.FEATURE_REALTIME_ALLOWLIST_SESSIONS = []
    settings.REALTIME_COST_LIMIT_PER_HOUR = 50.0
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    settings.REALTIME_RESERVATION_TTL_SECONDS = int(TTL.total_seconds())
    return settings


# --- the boundaries of the percentage ------------------------------------------------------------


@pytest.mark.parametrize("bucket", EDGE_BUCKETS)
def test_a_session_is_in_exactly_when_its_bucket_is_below_the_percentage(routing_settings, bucket):
    session_id = ids_by_bucket()[bucket][0]
    act("enable", percent=bucket / 100)
    decision = explain_session(session_id)
    assert (decision.mode, decision.reason, decision.bucket) == ("legacy", "outside_rollout", bucket)
    act("set_rollout_percentage", percent=(bucket + 1) / 100)
    decision = explain_session(session_id)
    assert (decision.mode, decision.reason, decision.bucket) == ("realtime", "in_rollout", bucket)
    assert decide_for_session(session_id).mode == "realtime"
    assert RoutingDecision.objects.get(session_id=session_id).mode == "realtime"


def test_zero_percent_admits_nobody_and_hundred_percent_everybody(routing_settings):
    first, *others = [session_id for ids in ids_by_bucket().values() for session_id in ids]
    act("enable", percent=0)
    assert {explain_session(session_id).reason for session_id in [first, *others]} == {"outside_rollout"}
    assert decide_for_session(first).mode == "legacy"  # bucket 0 at 0 %
    act("set_rollout_percentage", percent=100)
    assert {explain_session(session_id).reason for session_id in others} == {"in_rollout"}
    assert decide_for_session(ids_by_bucket()[9999][0]).mode == "realtime"
    assert decide_for_session(first).reason == "outside_rollout"  # its first decision, for its whole life


def test_a_realtime_session_returning_after_the_hourly_limit_passed_moves_to_legacy(routing_settings):
    """Its own hold would still admit it; its next turn would spend past the limit (found by the machine below)."""
    act("enable", percent=100)
    act("set_cost_limit", cost_limit=1)
    assert decide_for_session("returning").mode == decide_for_session("live").mode == "realtime"
    guards.record_cost(Decimal("0.5"), 1.0, session_id="returning")  # a turn; then its kiosk drops
    guards.record_cost(Decimal("0.5"), 1.0, session_id="live")  # this turn reaches the limit: the guard opens
    assert guards.cost_guard_open()
    assert explain_session("returning").reason == "fell_back:cost_limit"
    decision = decide_for_session("returning")
    assert (decision.mode, decision.reason) == ("legacy", "fell_back:cost_limit")
    assert list(FallbackEvent.objects.filter(session_id="returning").values_list("reason", flat=True)) == [
        FallbackReason.COST_LIMIT
    ]


# --- the model -----------------------------------------------------------------------------------


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


class RoutingMachine(RuleBasedStateMachine):
    """Random sequences against the real services; every example starts from a clean state (a savepoint)."""

    def __init__(self) -> None:
        super().__init__()
        self._savepoint = transaction.savepoint()
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

    def teardown(self) -> None:
        self._set_env_switch(False)
        transaction.savepoint_rollback(self._savepoint)

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

    # -- rules: sessions -------------------------------------------------------------------------

    @initialize(
        enabled=st.sampled_from((True, True, True, None, False)),
        percent=st.sampled_from((10000, 10000, 5000, *EDGE_PERCENTS)),
        limit=st.sampled_from(("1", "1.5", "2", *LIMITS)),
        sessions=st.integers(0, 3),
    )
    def configure(self, enabled, percent, limit, sessions):
        """Start from a rollout in some state, most often on and with room for a few Realtime sessions, so that
        live sessions, drops and returns meet stops and the cost limit within an example."""
        if enabled is not None:
            act("enable" if enabled else "disable")
            self.admin_enabled = enabled
        act("set_rollout_percentage", percent=percent / 100)
        act("set_cost_limit", cost_limit=limit)
        self.admin_percent, self.admin_limit = percent, Decimal(limit)
        self.ceiling = self.limit + self.estimate
        for _ in range(sessions):
            self.new_session(None)

    @rule(edge=st.one_of(st.none(), st.sampled_from(EDGE_BUCKETS)))
    def new_session(self, edge):
        session_id = self.new_session_id(edge)
        simulated = explain_session(session_id, now=self.now)
        expected = self.expected_new(session_id, record=True)
        decision = decide_for_session(session_id, now=self.now)
        assert (decision.mode, decision.reason, decision.pinned) == (*expected, False)
        assert (simulated.mode, simulated.reason) == expected  # the simulate box is the same decision
        self.sessions[session_id] = Session(expected)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def reconnect(self, data):
        session_id = data.draw(st.sampled_from(sorted(self.sessions)))
        self.sessions[session_id].connected = False  # the old socket is gone; a new one asks again
        simulated = explain_session(session_id, now=self.now)
        mode, reason, pinned = self.expected_return(session_id)
        decision = decide_for_session(session_id, now=self.now)
        assert (decision.mode, decision.reason, decision.pinned) == (mode, reason, pinned)
        assert (simulated.mode, simulated.reason) == (mode, reason)
        self.sessions[session_id].connected = True

    @precondition(lambda self: any(s.connected for s in self.sessions.values()))
    @rule(data=st.data(), end=st.booleans())
    def leave(self, data, end):
        """The kiosk drops (it may come back with the same id), or ends the session (its hold is settled)."""
        session_id = data.draw(st.sampled_from(sorted(s for s, v in self.sessions.items() if v.connected)))
        self.sessions[session_id].connected = False
        if end:
            settle_session_cost(session_id, now=self.now)
            reservation = self.reservations.get(session_id)
            if reservation is not None:
                reservation.settled = True

    @precondition(lambda self: any(s.connected and s.realtime for s in self.sessions.values()))
    @rule(data=st.data(), usd=st.sampled_from(TURN_SPEND))
    def realtime_turn(self, data, usd):
        """A live Realtime turn is priced into the hour; at the limit the session (and every live one) moves."""
        session_id = data.draw(
            st.sampled_from(sorted(s for s, v in self.sessions.items() if v.connected and v.realtime))
        )
        amount = min(Decimal(usd), self.estimate)
        # A Realtime turn only starts below the limit (or once after staff touched the limit or the guard).
        assert self.spend_last_hour() < self.limit or self.cost_stale
        guards.record_cost(amount, float(cost_limit_per_hour()), now=self.now, session_id=session_id)
        minute = self.now.replace(second=0, microsecond=0)
        self.spend[minute] = self.spend.get(minute, Decimal(0)) + amount
        reservation = self.reservations.get(session_id)
        if reservation is not None and not reservation.settled:
            reservation.consumed += amount
        self.refresh_cost_guard()
        if self.cost_open and self.sessions[session_id].realtime:  # the turn's own `limit_reached`
            self.move_live_sessions(FallbackReason.COST_LIMIT)

    @rule(minutes=st.sampled_from((1, 5, 10, 20, 31, 61, 180)))
    def time_passes(self, minutes):
        self.now += timedelta(minutes=minutes)

    # -- rules: admin and emergency actions ------------------------------------------------------
    # Grouped into few rules (each picks one action), so that session rules get most of the steps.

    @rule(data=st.data())
    def admin(self, data):
        actions = {
            self.enable_or_disable: {"percent": st.one_of(st.none(), st.just(-1), st.sampled_from(EDGE_PERCENTS))},
            self.set_percentage: {"percent": st.one_of(st.sampled_from(EDGE_PERCENTS), st.integers(0, BASIS_POINTS))},
            self.set_stage: {"stage": st.sampled_from(sorted(STAGE_PLAN))},
            self.allowlist_change: {"data": st.just(data), "add": st.booleans()},
            self.set_cost_limit: {"limit": st.sampled_from(LIMITS)},
            self.use_env_defaults: {},
            self.environment_kill_switch: {"off": st.booleans()},
        }
        self.run_one(data, actions)

    @rule(data=st.data())
    def guard_event(self, data):
        actions = {
            self.fatal_upstream_error: {},
            self.reset_guard: {"name": st.sampled_from((GuardName.COST, GuardName.LATENCY, GuardName.CONNECTION))},
            self.row_corrupted: {"row": st.sampled_from(("latency guard", "percentage"))},
        }
        if self.connection.state == "half_open":
            actions[self.probe_reports] = {"ok": st.booleans()}
        self.run_one(data, actions)

    def run_one(self, data, actions) -> None:
        action = data.draw(st.sampled_from(list(actions)), label="action")
        action(**{name: data.draw(strategy, label=name) for name, strategy in actions[action].items()})

    def enable_or_disable(self, percent):
        """Enable (with a percentage, in one action, or without), or disable (percent -1)."""
        if percent == -1:
            act("disable")
            self.admin_enabled = False
            return
        if percent is None:
            act("enable")
        else:
            act("enable", percent=percent / 100)
            self.admin_percent, self.percent_broken = percent, False
        self.admin_enabled = True

    def set_percentage(self, percent):
        before = self.explained()
        act("set_rollout_percentage", percent=percent / 100)
        self.check_percentage_move(before, percent)

    def set_stage(self, stage):
        before = self.explained()
        apply_action("set_stage", actor="test:state-machine", reason="property test", override=True, stage=stage)
        self.check_percentage_move(before, STAGE_PLAN[stage][0])

    def check_percentage_move(self, before: dict[str, tuple[str, str]], percent: int) -> None:
        """Raising the percentage only adds sessions, lowering it only removes some (same salt)."""
        old = self.admin_percent or 0
        old_broken, self.admin_percent, self.percent_broken = self.percent_broken, percent, False
        after = self.explained()
        if old_broken:
            return
        was_in = {sid for sid, (mode, _) in before.items() if mode == "realtime"}
        now_in = {sid for sid, (mode, _) in after.items() if mode == "realtime"}
        if percent >= old:
            assert was_in <= now_in
        if percent <= old:
            assert now_in <= was_in

    def allowlist_change(self, data, add):
        candidates = [ids[0] for ids in ids_by_bucket().values()] + [ids_by_bucket()[9999][1], "s-1", "s-2"]
        session_id = data.draw(st.sampled_from(candidates))
        if add:
            act("allowlist_add", session_id=session_id)
            self.allowlist.add(session_id)
        elif session_id in self.allowlist:
            act("allowlist_remove", session_id=session_id)
            self.allowlist.discard(session_id)
        else:
            with pytest.raises(ActionError):
                act("allowlist_remove", session_id=session_id)

    def set_cost_limit(self, limit):
        act("set_cost_limit", cost_limit=limit)
        self.admin_limit, self.cost_stale = Decimal(limit), True
        self.ceiling = max(self.ceiling, self.spend_last_hour() + self.estimate)

    def use_env_defaults(self):
        act("use_env_defaults")
        self.admin_enabled = self.admin_percent = self.admin_limit = None
        self.percent_broken, self.cost_stale = False, True
        self.ceiling = max(self.ceiling, self.spend_last_hour() + self.estimate)

    @rule(
        action=st.sampled_from(("emergency_stop", "clear_emergency_stop", "force_fallback", "resume")),
        heard_at_once=st.booleans(),
    )
    def emergency(self, action, heard_at_once):
        """A stop reaches live sessions through the broadcast, or (a `manage.py` stop on the in-process layer)
        only when each server's watch next polls; a kiosk may reconnect in between."""
        act(action)
        if action == "emergency_stop":
            self.stop, self.stop_unheard = True, not heard_at_once
            if heard_at_once:
                self.move_live_sessions(FallbackReason.EMERGENCY_STOP)  # the broadcast drains live sessions
        elif action == "force_fallback":
            self.force = True
        else:
            self.stop = self.stop_unheard = False
            self.force = self.force and action == "clear_emergency_stop"

    @precondition(lambda self: self.stop_unheard)
    @rule()
    def watch_polls(self):
        self.stop_unheard = False
        self.move_live_sessions(FallbackReason.EMERGENCY_STOP)

    def environment_kill_switch(self, off):
        self._set_env_switch(off)

    # -- rules: guards and doubt -----------------------------------------------------------------

    def fatal_upstream_error(self):
        opened = guards.record_fatal_upstream_error("401 from upstream", now=self.now)
        assert opened == (self.connection.state != "open")
        if opened:
            self.trip_connection()

    def probe_reports(self, ok):
        guards.record_connection_result(ok, now=self.now)
        if not ok:
            self.trip_connection()
            return
        self.connection.successes += 1
        if self.connection.successes >= PROBES_TO_CLOSE:
            self.connection.state = "closed"
            self.connection.half_open_since, self.connection.budget, self.connection.successes = None, 0, 0

    def reset_guard(self, name):
        apply_action("reset_guard", actor="test:state-machine", reason="property test", now=self.now, guard=name)
        if name == GuardName.COST:
            self.cost_open, self.cost_stale = False, True
            self.ceiling = max(self.ceiling, self.spend_last_hour() + self.estimate)
        elif name == GuardName.LATENCY:
            self.latency_broken = False
        else:
            self.connection = Connection()

    def row_corrupted(self, row):
        """A state no code path writes: the policy must answer Legacy, not guess."""
        if row == "latency guard":
            GuardState.objects.get_or_create(name=GuardName.LATENCY)
            GuardState.objects.filter(name=GuardName.LATENCY).update(state="bogus")
            self.latency_broken = True
        else:
            RolloutConfig.load()
            RolloutConfig.objects.filter(pk=1).update(percent_bp=BASIS_POINTS + 1)
            self.percent_broken = True

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def one_decision_record_per_session_equal_to_its_first_path(self):
        rows = {row[0]: row[1:] for row in RoutingDecision.objects.values_list("session_id", "mode", "reason")}
        assert RoutingDecision.objects.count() == len(rows) == len(self.sessions)
        assert rows == {sid: session.first for sid, session in self.sessions.items()}

    @invariant()
    def paths_change_only_by_the_allowed_moves(self):
        events = list(FallbackEvent.objects.values_list("session_id", "reason"))
        assert len(events) == len({sid for sid, _ in events})  # at most one move per session
        assert dict(events) == {sid: s.fell_back for sid, s in self.sessions.items() if s.fell_back}
        for sid, reason in events:
            assert self.sessions[sid].first[0] == "realtime"  # only Realtime sessions move, and only to Legacy
            assert reason in (FallbackReason.EMERGENCY_STOP, FallbackReason.COST_LIMIT)

    @invariant()
    def guard_rows_agree_with_the_model(self):
        states = dict(GuardState.objects.values_list("name", "state"))
        assert states.get(GuardName.COST, "closed") == ("open" if self.cost_open else "closed")
        assert states.get(GuardName.CONNECTION, "closed") == self.connection.state
        assert states.get(GuardName.ERROR_RATE, "closed") == "closed"
        assert guards.cost_guard_open() == self.cost_open

    @invariant()
    def spend_never_passes_the_limit_by_more_than_one_reservation(self):
        spend = self.spend_last_hour()
        assert guards.spend_last_hour(now=self.now) == spend
        assert guards.committed_last_hour(now=self.now) == self.committed()
        if spend <= self.limit and not self.cost_stale:
            self.ceiling = self.limit + self.estimate
        assert spend <= self.ceiling
        open_holds = CostReservation.objects.filter(settled_at__isnull=True, expires_at__gt=self.now).count()
        assert open_holds == sum(1 for r in self.reservations.values() if self.open_hold(r))

    @invariant()
    def no_live_realtime_session_while_stopped_or_over_the_limit(self):
        if (self.stop and not self.stop_unheard) or self.cost_open:
            assert not [sid for sid, s in self.sessions.items() if s.connected and s.realtime]

    @invariant()
    def the_simulate_box_answers_what_a_new_session_would_get(self):
        """Stop beats all, the environment beats the admin, Legacy on doubt: checked on ids never decided."""
        self.steps += 1
        watched = self.watch_ids()
        for session_id in (watched[self.steps % len(watched)],):
            decision = explain_session(session_id, now=self.now)
            assert (decision.mode, decision.reason) == self.expected_new(session_id, record=False)
            if self.stop:
                assert decision.reason == "emergency_stop"
            elif self.env_off and not self.force:
                assert decision.reason == "disabled_by_environment"
            if self.latency_broken:
                assert decision.mode == "legacy"
        assert not RoutingDecision.objects.filter(session_id__in=self.watch_ids()).exists()


@pytest.fixture
def quiet_routing_logs():
    """The machine makes thousands of audited changes and expected policy errors; their logs are not the result."""
    loggers = [logging.getLogger(name) for name in ("fallback", "metrics")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.timeout(900)  # passing takes well under a minute; a failure's shrinking takes longer
def test_routing_state_machine(routing_settings, quiet_routing_logs):
    run_state_machine_as_test(
        RoutingMachine,
        settings=settings(
            max_examples=200,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
