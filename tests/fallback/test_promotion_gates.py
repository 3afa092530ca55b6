"""Promotion gates (Realtime against Legacy over a stage's soak), the gated promotion and the autopilot."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from fallback.autopilot import autopilot
from fallback.emergency import ActionError, apply_action
from fallback.gates import MIN_SESSIONS_PER_PATH, promotion_gates
from fallback.guards import record_fatal_upstream_error
from fallback.models import AuditEntry, GuardState, RolloutConfig
from metrics.models import Outcome, SessionMetric, TurnMetric
from reception.models import Visit

START = timezone.now() - timedelta(hours=30)  # stage s1 entered here
NOW = START + timedelta(hours=25)  # soaked
METRIC_GATES = ("error rate", "p95 time to first audio", "completed visits", "cost per completed visit", "satisfaction")


def seed(
    path: str,
    n: int = 100,
    *,
    errors: int = 0,
    completed: int | None = None,
    ttfa: float = 800.0,
    cost: str = "0.10",
    at=None,
    ratings: tuple[int, ...] = (3,),
) -> None:
    """``n`` sessions started on ``path`` (ended in the soak), one timed turn each, and their visits; the sessions
    are rated by turns from ``ratings`` (None: not rated)."""
    at = at or START + timedelta(hours=1)
    completed = n - errors if completed is None else completed
    for i in range(n):
        session_id = f"{path}-{at:%H%M}-{i}"
        SessionMetric.objects.create(
            session_id=session_id,
            started_at=at,
            ended_at=at + timedelta(minutes=3),
            mode=path,
            paths=path,
            outcome=Outcome.ERROR if i < errors else Outcome.COMPLETED,
            turns=1,
            cost_usd=Decimal(cost),
            satisfaction=ratings[i % len(ratings)],
        )
        TurnMetric.objects.create(event_id=session_id, session_id=session_id, occurred_at=at, path=path, ttfa_ms=ttfa)
        status = Visit.Status.HOST_NOTIFIED if i < completed else Visit.Status.ENDED
        Visit.objects.create(session_id=session_id, status=status)


def at_stage_s1() -> None:
    apply_action("set_stage", actor="t", reason="start", stage="s1", now=START)


def gates_by_name(now=NOW):
    return {gate.name: gate for gate in promotion_gates(now)}


def turn_autopilot_on() -> None:
    apply_action("auto_promote_on", actor="user:ops", reason="let it run")


def autopilot_audit():
    return list(AuditEntry.objects.filter(actor="system:autopilot"))


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- the gates ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_gate_is_green_on_comparable_paths():
    at_stage_s1()
    seed("realtime", errors=5, ttfa=900)
    seed("legacy", errors=5, ttfa=1500)
    gates = gates_by_name()
    assert list(gates) == ["soaked", "guards closed", *METRIC_GATES]
    assert all(gate.passed for gate in gates.values()), gates
    assert gates["error rate"].realtime == pytest.approx(0.05)
    assert gates["p95 time to first audio"].legacy == 1500
    assert float(gates["cost per completed visit"].realtime) == pytest.approx(10 / 95)  # 100 sessions, 95 visits


@pytest.mark.django_db
@pytest.mark.parametrize(("rt_errors", "passed"), [(7, True), (8, False)])
def test_error_rate_allows_two_points_over_legacy(rt_errors, passed):
    at_stage_s1()
    seed("realtime", errors=rt_errors)
    seed("legacy", errors=5)
    assert gates_by_name()["error rate"].passed is passed


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rt_ms", "lg_ms", "passed"),
    [(2500, 3000, True), (1900, 1000, True), (2000, 1000, True), (2100, 2000, False)],
)
def test_p95_time_to_first_audio_is_no_worse_than_legacy_or_within_2_s(rt_ms, lg_ms, passed):
    at_stage_s1()
    seed("realtime", ttfa=rt_ms)
    seed("legacy", ttfa=lg_ms)
    assert gates_by_name()["p95 time to first audio"].passed is passed


@pytest.mark.django_db
@pytest.mark.parametrize(("rt_completed", "passed"), [(85, True), (84, False)])
def test_completed_visits_may_trail_legacy_by_five_points(rt_completed, passed):
    at_stage_s1()
    seed("realtime", completed=rt_completed)
    seed("legacy", completed=90)
    gate = gates_by_name()["completed visits"]
    assert gate.passed is passed
    assert (gate.realtime, gate.legacy) == (rt_completed / 100, 0.9)


@pytest.mark.django_db
def test_the_completed_visits_margin_follows_the_setting(settings):
    settings.PROMOTION_COMPLETED_MARGIN = 0.0
    at_stage_s1()
    seed("realtime", completed=89)
    seed("legacy", completed=90)
    gate = gates_by_name()["completed visits"]
    assert not gate.passed and "Legacy - 0 points" in gate.rule


@pytest.mark.django_db
@pytest.mark.parametrize(("rt_ratings", "passed"), [((3, 3, 3, 3, 2), True), ((3, 3, 3, 2, 2), False)])
def test_satisfaction_may_trail_legacy_by_the_margin(rt_ratings, passed):
    at_stage_s1()
    seed("realtime", ratings=rt_ratings)  # mean 2.8 or 2.6 against 3.0 (margin 0.2)
    seed("legacy")
    gate = gates_by_name()["satisfaction"]
    assert gate.passed is passed
    assert gate.realtime == pytest.approx(sum(rt_ratings) / len(rt_ratings))
    assert gate.realtime_display.endswith("/ 3")


@pytest.mark.django_db
def test_satisfaction_needs_enough_ratings_on_each_path(settings):
    settings.PROMOTION_MIN_RATINGS = 30
    at_stage_s1()
    seed("realtime", n=29, ratings=(None,))
    seed("realtime", n=29, at=START + timedelta(hours=2))
    seed("legacy", n=40)
    gate = gates_by_name()["satisfaction"]
    assert not gate.passed and gate.reason == "not enough ratings (at least 30 each)"
    assert gates_by_name()["completed visits"].passed  # unrated sessions still count for the other gates


@pytest.mark.django_db
@pytest.mark.parametrize(("cost", "passed"), [("0.50", True), ("0.51", False)])
def test_cost_per_completed_visit_is_capped_by_the_setting(cost, passed):
    at_stage_s1()
    seed("realtime", n=20, cost=cost)
    seed("legacy", n=20, cost="0.01")
    assert gates_by_name()["cost per completed visit"].passed is passed


@pytest.mark.django_db
def test_the_cost_cap_follows_the_setting(settings):
    settings.REALTIME_MAX_COST_PER_VISIT = 0.05
    at_stage_s1()
    seed("realtime")
    seed("legacy")
    gate = gates_by_name()["cost per completed visit"]
    assert not gate.passed and "0.05" in gate.rule


@pytest.mark.django_db
def test_too_few_sessions_fail_every_metric_gate():
    at_stage_s1()
    seed("realtime", n=MIN_SESSIONS_PER_PATH - 1)
    seed("legacy")
    gates = gates_by_name()
    for name in METRIC_GATES:
        assert not gates[name].passed
        assert "not enough sessions" in gates[name].reason
    assert gates["soaked"].passed and gates["guards closed"].passed


@pytest.mark.django_db
def test_only_sessions_of_the_current_soak_count():
    at_stage_s1()
    seed("realtime", at=START - timedelta(hours=2))  # before the stage was entered
    seed("legacy")
    assert "not enough sessions" in gates_by_name()["error rate"].reason


@pytest.mark.django_db
def test_soak_and_guards_are_gates_too():
    at_stage_s1()
    seed("realtime")
    seed("legacy")
    early = gates_by_name(START + timedelta(hours=23))["soaked"]
    assert not early.passed and "soaked 23.0 h of 24 h" in early.reason
    GuardState.objects.update_or_create(name="latency", defaults={"state": "open"})
    guards = gates_by_name()["guards closed"]
    assert not guards.passed and guards.reason == "guards not closed: latency"


# --- gated promotion -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_promotion_is_refused_until_every_gate_passes_then_allowed():
    at_stage_s1()
    seed("realtime", errors=20)
    seed("legacy", errors=5)
    with pytest.raises(ActionError, match="error rate: Realtime fails more often"):
        apply_action("set_stage", actor="t", reason="next", stage="s10", now=NOW)
    seed("realtime", errors=0, at=START + timedelta(hours=2))  # 20/200 = 10 % against 5 %: still red
    with pytest.raises(ActionError, match="error rate"):
        apply_action("set_stage", actor="t", reason="next", stage="s10", now=NOW)
    seed("realtime", errors=0, n=300, at=START + timedelta(hours=3))  # 20/500 = 4 %
    apply_action("set_stage", actor="t", reason="next", stage="s10", now=NOW)
    assert RolloutConfig.load().stage == "s10"


@pytest.mark.django_db
def test_promotion_without_data_is_refused_and_the_override_is_audited():
    at_stage_s1()
    with pytest.raises(ActionError, match="not enough sessions"):
        apply_action("set_stage", actor="t", reason="next", stage="s10", now=NOW)
    result = apply_action("set_stage", actor="user:boss", reason="pilot ok", stage="s10", override=True, now=NOW)
    assert "not enough sessions" in result.after["override"]
    assert AuditEntry.objects.get(pk=result.audit_id).after["override"] == result.after["override"]
    assert RolloutConfig.load().stage == "s10"


@pytest.mark.django_db
def test_demotion_needs_no_gate():
    at_stage_s1()
    apply_action("set_stage", actor="t", reason="pilot", stage="s10", override=True, now=NOW)
    apply_action("set_stage", actor="t", reason="back", stage="s1", now=NOW)
    assert RolloutConfig.load().stage == "s1"


# --- autopilot -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_auto_promote_is_off_by_default_and_switched_with_an_audited_action():
    assert RolloutConfig.load().auto_promote is False
    turn_autopilot_on()
    assert RolloutConfig.load().auto_promote is True
    entry = AuditEntry.objects.get(action="auto_promote_on")
    assert (entry.before, entry.after["auto_promote"]) == ({"auto_promote": False}, True)


@pytest.mark.django_db
def test_autopilot_does_nothing_while_off_even_when_green():
    at_stage_s1()
    seed("realtime")
    seed("legacy")
    assert autopilot(NOW) is None
    assert RolloutConfig.load().stage == "s1"
    assert not autopilot_audit()


@pytest.mark.django_db
def test_autopilot_promotes_only_when_every_gate_is_green():
    at_stage_s1()
    turn_autopilot_on()
    seed("realtime", n=20, ttfa=2600)
    seed("legacy", ttfa=1000)
    assert autopilot(NOW) is None  # latency red
    assert autopilot(START + timedelta(hours=2)) is None  # not soaked
    assert not autopilot_audit()
    seed("realtime", n=400, ttfa=900, at=START + timedelta(hours=2))  # p95 of 420 turns: 900 ms
    done = autopilot(NOW)
    assert done.startswith("promoted s1 -> s10")
    assert RolloutConfig.load().stage == "s10"
    (entry,) = autopilot_audit()
    assert entry.action == "set_stage" and entry.after["stage"] == "s10" and "override" not in entry.after
    assert "every gate green" in entry.reason and "p95 time to first audio: pass" in entry.reason
    assert autopilot(NOW) is None  # the new stage has not soaked (nor has data)


@pytest.mark.django_db
def test_a_guard_that_opens_demotes_one_stage_at_once():
    at_stage_s1()
    apply_action("set_stage", actor="t", reason="pilot", stage="s50", override=True, now=START + timedelta(hours=1))
    turn_autopilot_on()
    assert record_fatal_upstream_error("401 invalid key", now=NOW)
    config = RolloutConfig.load()
    assert (config.stage, config.percent_bp) == ("s10", 1000)
    (entry,) = autopilot_audit()
    assert entry.after["stage"] == "s10" and "connection" in entry.reason and "401" in entry.reason
    # The same trip does not demote again on the next run; the guard still blocks promotion.
    assert autopilot(NOW + timedelta(minutes=1)) is None
    assert RolloutConfig.load().stage == "s10"


@pytest.mark.django_db
def test_a_guard_that_opens_while_autopilot_is_off_does_not_demote():
    at_stage_s1()
    apply_action("set_stage", actor="t", reason="pilot", stage="s10", override=True, now=START + timedelta(hours=1))
    assert record_fatal_upstream_error("401", now=NOW)
    assert RolloutConfig.load().stage == "s10"
    assert not autopilot_audit()


@pytest.mark.django_db
def test_autopilot_run_demotes_on_an_open_guard_but_never_below_s1():
    at_stage_s1()
    apply_action("set_stage", actor="t", reason="pilot", stage="s10", override=True, now=START + timedelta(hours=1))
    apply_action("auto_promote_on", actor="t", reason="go")
    GuardState.objects.update_or_create(
        name="latency", defaults={"state": "open", "opened_at": NOW, "last_reason": "slow"}
    )
    assert autopilot(NOW).startswith("demoted s10 -> s1")
    GuardState.objects.filter(name="latency").update(opened_at=NOW + timedelta(minutes=5))  # tripped again
    assert autopilot(NOW + timedelta(minutes=6)) is None
    assert RolloutConfig.load().stage == "s1"
    assert [e.after["stage"] for e in autopilot_audit()] == ["s1"]


# --- command, status and admin -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_autopilot_command_prints_one_line():
    at_stage_s1()
    assert run("rollout_autopilot") == "autopilot: no change (auto_promote is off)\n"
    turn_autopilot_on()
    out = run("rollout_autopilot")
    assert out.count("\n") == 1 and out.startswith("autopilot: no change (stage s1; waiting on error rate, p95")
    assert "not enough sessions" in out
    RolloutConfig.objects.filter(pk=1).update(stage_entered_at=timezone.now() - timedelta(hours=25))
    seed("realtime", at=timezone.now() - timedelta(hours=2))
    seed("legacy", at=timezone.now() - timedelta(hours=2))
    out = run("rollout_autopilot")
    assert out.count("\n") == 1 and out.startswith("autopilot: promoted s1 -> s10")
    assert autopilot_audit()[0].after["stage"] == "s10"


@pytest.mark.django_db
def test_realtime_status_lists_the_gates():
    at_stage_s1()
    out = run("realtime_status")
    assert "Promotion gates" in out and "auto_promote: off" in out
    for name in METRIC_GATES:
        assert name in out
    assert "not enough sessions" in out


@pytest.mark.django_db
def test_control_page_shows_the_gates(admin_client):
    at_stage_s1()
    page = admin_client.get(reverse("admin:fallback_control")).content.decode()
    assert 'id="gates"' in page and "p95 time to first audio" in page and "not enough sessions" in page
    assert 'value="auto_promote_on"' in page
