"""Guards: the closed/open/half-open state machine in the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fallback import guards
from fallback.emergency import apply_action
from fallback.models import AuditEntry, GuardState
from fallback.services import decide_for_session
from metrics import ledger
from metrics.signals import realtime_spend_recorded
from tests.fallback import harness as fallback_harness

pytestmark = pytest.mark.django_db


def state(name: str) -> GuardState:
    return GuardState.objects.get(name=name)


def open_error_rate_guard(now):
    """Trip the error-rate guard with its minimum sample: 20 sessions, all failed."""
    transitions = [guards.record_session_outcome(False, now=now) for _ in range(20)]
    assert transitions[-1] == "opened"


def test_error_rate_guard_waits_for_the_minimum_sample():
    now = timezone.now()
    for _ in range(19):
        assert guards.record_session_outcome(False, now=now) is None
    assert state("error_rate").state == "closed"
    assert guards.record_session_outcome(False, now=now) == "opened"
    assert state("error_rate").state == "open"


def test_error_rate_below_threshold_does_not_trip(settings):
    settings.ALERT_ERROR_RATE_THRESHOLD = 0.3
    now = timezone.now()
    for ok in [False] * 5 + [True] * 20:  # at most 25 % failures
        assert guards.record_session_outcome(ok, now=now) is None
    assert state("error_rate").state == "closed"


def test_window_restarts_so_old_failures_are_forgotten():
    start = timezone.now()
    for _ in range(19):
        guards.record_session_outcome(False, now=start)
    later = start + timedelta(minutes=16)
    assert guards.record_session_outcome(False, now=later) is None
    row = state("error_rate")
    assert (row.state, row.window_samples, row.window_failures) == ("closed", 1, 1)


def test_transition_is_audited_once_with_before_and_after():
    open_error_rate_guard(timezone.now())
    entry = AuditEntry.objects.get(action="guard_opened")
    assert entry.actor == "system:guard:error_rate"
    assert entry.before == {"state": "closed", "trip_count": 0}
    assert entry.after == {"state": "open", "trip_count": 1, "cooldown_seconds": 600}
    assert "failure rate 100.0% over 20 samples" in entry.reason


def test_open_guard_sends_new_sessions_to_legacy_until_cooldown():
    apply_action("enable", actor="t", reason="t")
    apply_action("set_rollout_percentage", actor="t", reason="t", percent=100)
    now = timezone.now()
    open_error_rate_guard(now)
    decision = decide_for_session("a", now=now + timedelta(minutes=9))
    assert (decision.mode, decision.reason) == ("legacy", "guard_open:error_rate")
    probe = decide_for_session("b", now=now + timedelta(minutes=10))
    assert (probe.mode, probe.reason) == ("realtime", "probe:error_rate")
    assert state("error_rate").state == "half_open"


def test_half_open_admits_a_bounded_number_of_probes_then_closes_on_success():
    now = timezone.now()
    open_error_rate_guard(now)
    probe_time = now + timedelta(minutes=10)
    admitted = [guards.acquire_probe("error_rate", now=probe_time) for _ in range(8)]
    assert admitted == [True] * 5 + [False] * 3
    assert guards.record_session_outcome(True, now=probe_time) is None
    assert guards.record_session_outcome(True, now=probe_time) is None
    assert guards.record_session_outcome(True, now=probe_time) == "closed"
    assert state("error_rate").state == "closed"
    assert AuditEntry.objects.filter(action="guard_closed").count() == 1


def test_a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_cap():
    now = timezone.now()
    open_error_rate_guard(now)
    cooldowns = [state("error_rate").cooldown_seconds]
    for _ in range(6):
        now = state("error_rate").retry_at
        assert guards.acquire_probe("error_rate", now=now)
        assert guards.record_session_outcome(False, now=now) == "reopened"
        cooldowns.append(state("error_rate").cooldown_seconds)
    assert cooldowns == [600, 1200, 2400, 4800, 7200, 7200, 7200]
    assert state("error_rate").trip_count == 7


def test_trips_older_than_a_day_no_longer_lengthen_the_cooldown():
    now = timezone.now()
    open_error_rate_guard(now)
    apply_action("reset_guard", actor="t", reason="fixed upstream", guard="error_rate")
    GuardState.objects.filter(name="error_rate").update(trip_count=3, last_trip_at=now - timedelta(days=2))
    open_error_rate_guard(now)
    assert (state("error_rate").trip_count, state("error_rate").cooldown_seconds) == (1, 600)


def test_probes_that_never_report_are_given_up_after_the_probe_timeout():
    now = timezone.now()
    open_error_rate_guard(now)
    probe_time = now + timedelta(minutes=10)
    for _ in range(5):
        assert guards.acquire_probe("error_rate", now=probe_time)
    assert not guards.acquire_probe("error_rate", now=probe_time + timedelta(minutes=9))
    assert guards.acquire_probe("error_rate", now=probe_time + timedelta(minutes=10))


def test_fatal_upstream_error_opens_the_connection_guard_at_once():
    assert guards.record_fatal_upstream_error("401 invalid_api_key") is True
    assert guards.record_fatal_upstream_error("401 invalid_api_key") is False
    row = state("connection")
    assert (row.state, row.trip_count) == ("open", 1)
    assert "401" in row.last_reason


def test_five_connection_failures_in_a_row_trip_the_fast_path():
    now = timezone.now()
    results = [guards.record_connection_result(ok, now=now) for ok in [False] * 4 + [True] + [False] * 5]
    assert results == [None] * 9 + ["opened"]
    assert "5 consecutive failures" in state("connection").last_reason


def test_slow_turns_trip_the_latency_guard():
    now = timezone.now()
    for ttfa in [800.0] * 40:
        assert guards.record_turn_latency(ttfa, now=now) is None
    results = [guards.record_turn_latency(2500.0, now=now) for _ in range(10)]
    assert results[-1] == "opened"
    with pytest.raises(ValueError, match="negative"):
        guards.record_turn_latency(-1)


def test_samples_while_open_are_ignored():
    now = timezone.now()
    open_error_rate_guard(now)
    assert guards.record_session_outcome(False, now=now) is None
    assert state("error_rate").trip_count == 1


def test_missing_guard_rows_are_recreated_closed(settings):
    """A flushed or fresh database has no guard rows; a guard that never tripped is closed."""
    settings.FEATURE_REALTIME_MODE_ENABLED = True
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 100
    GuardState.objects.all().delete()
    assert decide_for_session("a").reason == "in_rollout"
    assert GuardState.objects.filter(state="closed").count() == 4
    GuardState.objects.all().delete()
    assert guards.record_fatal_upstream_error("401") is True


def test_unknown_guard_is_refused():
    with pytest.raises(ValueError, match="Unknown guard 'disk'"):
        guards.record_sample("disk", False)


def test_cost_guard_opens_at_the_limit_and_closes_below_seventy_percent(settings):
    settings.REALTIME_COST_LIMIT_PER_HOUR = 10.0
    settings.FEATURE_REALTIME_MODE_ENABLED = True
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 100
    start = timezone.now().replace(second=0, microsecond=0)
    assert guards.record_cost(6, 10.0, now=start) == guards.CostCheck(None, open=False)
    assert guards.record_cost(4, 10.0, now=start + timedelta(minutes=30)) == guards.CostCheck("opened", open=True)
    assert guards.record_cost(1, 10.0, now=start + timedelta(minutes=31)) == guards.CostCheck(None, open=True)
    assert decide_for_session("a", now=start + timedelta(minutes=31)).reason == "guard_open:cost"
    # 61 minutes after the start the first 6 USD leave the window: 4 USD < 7 USD closes it.
    assert decide_for_session("b", now=start + timedelta(minutes=61)).reason == "in_rollout"
    assert state("cost").state == "closed"


def test_the_cost_guard_takes_no_write_transaction_when_nothing_moves():
    """Every session start and priced response refreshes it: on SQLite a transaction there queues behind every
    other writer of the process."""
    start = timezone.now().replace(second=0, microsecond=0)
    guards.refresh_cost_guard(10.0, now=start)  # the row exists
    guards.record_cost(6, 10.0, now=start)
    with CaptureQueriesContext(connection) as queries:
        assert guards.refresh_cost_guard(10.0, now=start) == guards.CostCheck(None, open=False)
    assert [q["sql"] for q in queries if q["sql"].startswith(("SAVEPOINT", "BEGIN", "UPDATE", "INSERT"))] == []
    assert guards.record_cost(4, 10.0, now=start).transition == "opened"  # a due transition is still taken


def test_spend_the_metrics_writer_records_is_held_to_the_effective_limit():
    apply_action("set_cost_limit", actor="t", reason="tight budget", cost_limit=1)
    ledger.add_spend(1.5)
    realtime_spend_recorded.send(sender=None, now=timezone.now())
    assert state("cost").state == "open"
    assert ledger.spend_last_hour() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="negative"):
        ledger.add_spend(-1)


def test_manual_reset_closes_the_guard_and_is_audited():
    guards.record_fatal_upstream_error("unknown model")
    apply_action("reset_guard", actor="user:ops", reason="key rotated", guard="connection")
    assert (state("connection").state, state("connection").trip_count) == ("closed", 0)
    entry = AuditEntry.objects.get(action="reset_guard")
    assert (entry.before["state"], entry.after["state"]) == ("open", "closed")


# --- concurrency: many processes, one transition --------------------------------------------------------


def assert_single_transition(url: str) -> None:
    results = fallback_harness.run_workers(url, "fail_connections", 6)
    assert sum(len(r["transitions"]) for r in results) == 1
    results = fallback_harness.run_workers(url, "fatal", 6)
    assert not any(r["opened"] for r in results)  # already open: nobody opens it again


def assert_probe_quota(url: str) -> None:
    fallback_harness.run_workers(url, "open_cooled", 1)
    results = fallback_harness.run_workers(url, "probe", 12)
    assert sum(r["admitted"] for r in results) == 5


def test_processes_tripping_the_same_guard_open_it_once_on_sqlite(tmp_path):
    assert_single_transition(fallback_harness.sqlite_database(tmp_path))


def test_half_open_quota_holds_under_concurrent_admissions_on_sqlite(tmp_path):
    assert_probe_quota(fallback_harness.sqlite_database(tmp_path))


@pytest.mark.postgres
def test_processes_tripping_the_same_guard_open_it_once_on_postgres():
    with fallback_harness.postgres_database() as url:
        assert_single_transition(url)
        assert_probe_quota(url)


@given(
    name=st.sampled_from(["connection", "latency"]),
    half_open=st.booleans(),
    earlier=st.lists(st.booleans(), max_size=60),
    batches=st.lists(st.lists(st.booleans(), min_size=1, max_size=8), min_size=1, max_size=8),
)
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_samples_counted_in_batches_leave_the_guard_as_one_by_one(name, half_open, earlier, batches):
    """The metrics writer counts a batch's turn latencies in one update: the guard must end as it would have
    after the same samples one at a time (same state, window, streak, trips, reason, transitions)."""
    now = timezone.now()

    def run(batched: bool):
        GuardState.objects.all().delete()
        if half_open:  # tripped an hour ago, cooled down: now probing
            while guards.record_sample(name, False, now=now - timedelta(hours=1)) != "opened":
                pass
            assert guards.acquire_probe(name, now=now)
        for ok in earlier:
            guards.record_sample(name, ok, now=now)
        moves = []
        for batch in batches:
            if batched:
                moves.append(guards.record_samples(name, batch, now=now))
            else:
                one_by_one = [guards.record_sample(name, ok, now=now) for ok in batch]
                moves.append(next((move for move in reversed(one_by_one) if move), None))
        row = state(name)
        fields = ("state", "window_samples", "window_failures", "consecutive_failures", "trip_count", "last_reason")
        return moves, [getattr(row, field) for field in fields], row.probe_successes

    assert run(batched=True) == run(batched=False)
