"""One decision per session for its whole life, kill switches that win, a record equal to the path taken.

Database-level checks of fallback.services.decide_for_session (the kiosk socket calls nothing else to
route a session); the same through the socket is in test_hybrid_voice_manager.py, and a server process
started with the environment's kill switch in test_environment_kill_switch (below, real subprocesses).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from fallback import guards, services
from fallback.emergency import apply_action
from fallback.models import FallbackEvent, GuardState, RoutingDecision
from fallback.services import decide_for_session, explain_session, record_fallback_event
from metrics import ledger
from metrics.models import CostReservation
from tests.fallback import harness as fallback_harness
from tests.support.live_server import REPO, database_env

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_prices")]


def act(action: str, **params) -> None:
    apply_action(action, actor="test:invariants", reason="test", **params)


def decisions_of(session_id: str) -> list[tuple[str, str]]:
    return list(RoutingDecision.objects.filter(session_id=session_id).values_list("mode", "reason"))


# --- pinning ---------------------------------------------------------------------------------------


def test_reconnects_keep_their_path_when_the_rollout_moves():
    """160 sessions start at 25 %, drop, and come back after the rollout moved to 60 %: none changes path."""
    act("enable", percent=25)
    ids = [f"kiosk-{n:03d}" for n in range(160)]
    first = {sid: decide_for_session(sid) for sid in ids}
    act("set_rollout_percentage", percent=60)
    again = {sid: decide_for_session(sid) for sid in ids}
    changed = [sid for sid in ids if (first[sid].mode, first[sid].reason) != (again[sid].mode, again[sid].reason)]
    assert changed == []
    assert all(again[sid].pinned for sid in ids)
    assert 0 < sum(d.realtime for d in first.values()) < 160  # both paths occur, so the check means something
    assert RoutingDecision.objects.count() == 160  # one record each, reconnects write none
    # A brand-new session is decided under the new percentage.
    assert explain_session("kiosk-new").pinned is False


def test_a_session_that_fell_back_stays_on_legacy_when_it_reconnects():
    act("enable", percent=100)
    assert decide_for_session("dropped").realtime
    record_fallback_event("dropped", "UPSTREAM_ERROR", "1011 from upstream")
    back = decide_for_session("dropped")
    assert (back.mode, back.reason) == ("legacy", "fell_back:upstream_error")
    assert decisions_of("dropped") == [("realtime", "in_rollout")]  # the record keeps what the session got first


def test_only_an_emergency_stop_moves_a_returning_realtime_session():
    act("enable", percent=100)
    assert decide_for_session("live").realtime
    act("force_fallback")  # emergency rollback: new sessions only
    assert decide_for_session("live").realtime
    assert decide_for_session("newcomer").reason == "force_fallback"
    act("emergency_stop")
    stopped = decide_for_session("live")
    assert (stopped.mode, stopped.reason) == ("legacy", "fell_back:emergency_stop")
    assert decide_for_session("live").reason == "fell_back:emergency_stop"
    assert list(FallbackEvent.objects.filter(session_id="live").values_list("reason", flat=True)) == ["EMERGENCY_STOP"]
    act("resume")
    assert decide_for_session("live").mode == "legacy"  # it fell back: it stays on Legacy


def test_a_returning_realtime_session_whose_cost_no_longer_fits_moves_to_legacy(settings):
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    act("enable", percent=100)
    act("set_cost_limit", cost_limit=1.0)
    assert decide_for_session("visitor").realtime
    ledger.settle_session_cost("visitor")  # the kiosk dropped: its session ended and released its hold
    guards.record_cost(0.8, 1.0)  # others spent meanwhile: 0.8 + 0.5 > 1.0
    back = decide_for_session("visitor")
    assert (back.mode, back.reason) == ("legacy", "fell_back:cost_limit")
    assert list(FallbackEvent.objects.filter(session_id="visitor").values_list("reason", flat=True)) == ["COST_LIMIT"]


# --- the record is the path --------------------------------------------------------------------------


def test_a_session_refused_by_cost_admission_is_recorded_as_legacy(settings):
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    act("enable", percent=100)
    act("set_cost_limit", cost_limit=0.4)
    decision = decide_for_session("too-dear")
    assert (decision.mode, decision.reason) == ("legacy", "cost_limit")
    assert decisions_of("too-dear") == [("legacy", "cost_limit")]
    assert not CostReservation.objects.exists()


def test_a_refused_session_gives_back_its_probe_slot(settings):
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    act("enable", percent=100)
    guards.record_fatal_upstream_error("401")
    GuardState.objects.filter(name="connection").update(retry_at=timezone.now() - timedelta(seconds=1))
    act("set_cost_limit", cost_limit=0.4)  # every Realtime admission is refused
    decision = decide_for_session("would-probe")
    assert (decision.mode, decision.reason) == ("legacy", "cost_limit")
    row = GuardState.objects.get(name="connection")
    assert row.state == "open"  # the probe's claim (open -> half-open) was rolled back with the refusal
    act("set_cost_limit", cost_limit=100)
    probe = decide_for_session("probe")
    assert (probe.mode, probe.reason) == ("realtime", "probe:connection")
    assert decisions_of("probe") == [("realtime", "probe:connection")]


def test_a_concurrent_first_decision_wins_and_the_loser_claims_nothing(monkeypatch, settings):
    """Another process wrote this session's first decision after we looked: our write fails, our claims roll
    back, and its decision is the session's."""
    act("enable", percent=100)
    RoutingDecision.objects.create(session_id="raced", mode="legacy", reason="outside_rollout", config_version=1)
    first_decision = services._first_decision
    looks = []

    def not_there_yet(session_id):
        looks.append(session_id)
        return None if len(looks) == 1 else first_decision(session_id)

    monkeypatch.setattr(services, "_first_decision", not_there_yet)
    decision = decide_for_session("raced")
    assert (decision.mode, decision.reason, decision.pinned) == ("legacy", "outside_rollout", True)
    assert RoutingDecision.objects.filter(session_id="raced").count() == 1
    assert not CostReservation.objects.filter(session_id="raced").exists()  # our reservation rolled back


def test_simulation_answers_what_the_decision_then_does(settings):
    """The admin's simulate box runs the same decision without writing: cost admission and the cost guard too."""
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    act("enable", percent=100)
    act("set_cost_limit", cost_limit=0.4)
    assert (explain_session("s1").mode, explain_session("s1").reason) == ("legacy", "cost_limit")
    act("set_cost_limit", cost_limit=10)
    guards.record_cost(Decimal("10.5"), 100)  # past the limit, recorded under a higher one: the guard is closed
    simulated = explain_session("s2")
    assert (simulated.mode, simulated.reason) == ("legacy", "guard_open:cost")
    assert GuardState.objects.get(name="cost").state == "closed"  # the simulation wrote nothing
    assert not RoutingDecision.objects.exists() and not CostReservation.objects.exists()
    real = decide_for_session("s2")
    assert (real.mode, real.reason) == (simulated.mode, simulated.reason)
    assert explain_session("s2").pinned


# --- the environment's kill switch -------------------------------------------------------------------


def test_the_environment_kill_switch_beats_the_admin(settings):
    act("enable", percent=100)
    settings.REALTIME_DISABLED_BY_ENVIRONMENT = True
    decisions = [decide_for_session(f"new-{n}") for n in range(10)]
    assert {(d.mode, d.reason) for d in decisions} == {("legacy", "disabled_by_environment")}
    act("emergency_stop")
    assert decide_for_session("during-stop").reason == "emergency_stop"  # the stop still beats everything


def _decide_in_a_server_process(database_url: str, env: dict[str, str], count: int) -> list[list[str]]:
    ids = ",".join(f"env-{env.get('FEATURE_REALTIME_MODE_ENABLED', 'unset')}-{n}" for n in range(count))
    return fallback_harness.run_workers(database_url, "decide", 1, arg=ids, env=env)[0]["decisions"]


@pytest.mark.django_db(transaction=True)
def test_environment_kill_switch_in_a_restarted_server_process(tmp_path):
    """The seed's rollback: after `rollout --enable`, a process started with FEATURE_REALTIME_MODE_ENABLED=false
    sends 0 of 10 new sessions to Realtime; empty or unset, the admin decides; the status command says so."""
    url = fallback_harness.sqlite_database(tmp_path)
    command = [sys.executable, "manage.py", "rollout", "--enable", "--percent", "100", "--reason", "test"]
    subprocess.run(command, cwd=REPO, env=database_env(url), check=True, timeout=120, capture_output=True)
    held = _decide_in_a_server_process(url, {"FEATURE_REALTIME_MODE_ENABLED": "false"}, 10)
    assert held == [["legacy", "disabled_by_environment"]] * 10
    admin = _decide_in_a_server_process(url, {"FEATURE_REALTIME_MODE_ENABLED": ""}, 3)
    assert admin == [["realtime", "in_rollout"]] * 3
    status = subprocess.run(
        [sys.executable, "manage.py", "realtime_status"],
        cwd=REPO,
        env=database_env(url, {"FEATURE_REALTIME_MODE_ENABLED": "false"}),
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    assert "held off by FEATURE_REALTIME_MODE_ENABLED=false" in status


# --- what staff see ------------------------------------------------------------------------------------------


def test_staff_see_the_environment_holding_realtime_off(admin_client, settings):
    act("enable", percent=100)
    page = admin_client.get(reverse("admin:fallback_control"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="environment-kill-switch"' not in page
    status = admin_client.get("/api/v1/realtime/status").json()
    assert (status["enabled"], status["disabled_by_environment"]) == (True, False)
    settings.REALTIME_DISABLED_BY_ENVIRONMENT = True
    page = admin_client.get(reverse("admin:fallback_control"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="environment-kill-switch"' in page and "FEATURE_REALTIME_MODE_ENABLED=false" in page
    status = admin_client.get("/api/v1/realtime/status").json()
    assert (status["enabled"], status["disabled_by_environment"]) == (False, True)


def test_the_control_page_warns_when_no_session_could_ever_be_admitted(admin_client, settings):
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    act("set_cost_limit", cost_limit=1.0)
    assert 'id="cost-limit-warning"' not in admin_client.get(reverse("admin:fallback_control")).content.decode()
    act("set_cost_limit", cost_limit=0.4)
    page = admin_client.get(reverse("admin:fallback_control"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="cost-limit-warning"' in page and "below one session's reservation (0.5" in page


def test_the_simulate_box_says_when_a_session_was_decided_before(admin_client):
    act("enable", percent=100)
    url = reverse("admin:fallback_control")
    assert (
        "decided before"
        not in admin_client.get(url, {"session_id": "fresh"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    )
    decide_for_session("fresh")
    page = admin_client.get(url, {"session_id": "fresh"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "decided before" in page
