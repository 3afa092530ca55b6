"""The whole routing state under random sequences of actions.

A hypothesis state machine drives the real services against the real database: admin and emergency
actions, the environment's kill switch, new sessions, drops and reconnects, guard trips and recoveries,
live Realtime turns that spend money, and time moving on. A plain model (routing_model.py) predicts every decision, the
guard states, the decision records and the hour's spend; the invariants are checked after every step.
The live voice manager is played by the machine: it moves a live Realtime session to Legacy (one
fallback event) on an emergency stop and when the cost guard opens, exactly as `voice.hybrid` does.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
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
from fallback.bucketing import BASIS_POINTS
from fallback.emergency import ActionError, apply_action
from fallback.models import (
    STAGE_PLAN,
    FallbackEvent,
    FallbackReason,
    GuardName,
    GuardState,
    RolloutConfig,
    RoutingDecision,
)
from fallback.services import decide_for_session, explain_session
from metrics import ledger
from metrics.cost import cost_limit_per_hour
from metrics.ledger import settle_session_cost
from metrics.models import CostReservation
from tests.fallback.routing_model import (
    EDGE_BUCKETS,
    EDGE_PERCENTS,
    LIMITS,
    PROBES_TO_CLOSE,
    TURN_SPEND,
    Connection,
    RoutingModel,
    Session,
    act,
    ids_by_bucket,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_prices")]


class RoutingMachine(RoutingModel, RuleBasedStateMachine):
    """Random sequences against the real services; every example starts from a clean state (a savepoint)."""

    def __init__(self) -> None:
        super().__init__()
        self._savepoint = transaction.savepoint()

    def teardown(self) -> None:
        self._set_env_switch(False)
        transaction.savepoint_rollback(self._savepoint)

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
        assert ledger.spend_last_hour(now=self.now) == spend
        assert ledger.committed_last_hour(now=self.now) == self.committed()
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
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
