"""The routing policy: evaluation order, and Legacy with a reason on any doubt."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from fallback import services
from fallback.config import EmergencySnapshot, ResolvedConfig, Setting
from fallback.guards import GuardSnapshot
from fallback.models import GuardName, RoutingDecision
from fallback.policy import GUARD_ORDER, decide

NOW = timezone.now()
IN_BUCKET, OUT_OF_BUCKET = "a", "kiosk-01:sess-0002"  # buckets 2684 and 7228


def config(*, enabled=True, percent_bp=5000, allowlist=(), version=7) -> ResolvedConfig:
    return ResolvedConfig(
        enabled=Setting(enabled, "admin", False),
        percent_bp=Setting(percent_bp, "admin", 0),
        allowlist=Setting(frozenset(allowlist), "env", frozenset()),
        cost_limit_per_hour=Setting(50.0, "code", 50.0),
        stage="",
        stage_entered_at=None,
        salt="realtime-voice-v1",
        version=version,
    )


def guards(**states: str) -> dict[str, GuardSnapshot]:
    """Every guard closed unless named; an open guard is still cooling down."""
    return {
        name: GuardSnapshot(name, states.get(name, "closed"), retry_at=NOW + timedelta(minutes=5), last_reason="x")
        for name in GuardName.values
    }


CALM = EmergencySnapshot()
STOP = EmergencySnapshot(emergency_stop=True, reason="smoke", actor="user:ops")
FORCE = EmergencySnapshot(force_fallback=True, reason="upstream incident", actor="cli:ops")


def test_everything_open_gives_realtime_by_bucket():
    decision = decide(config(), guards(), CALM, IN_BUCKET, now=NOW)
    assert (decision.mode, decision.reason, decision.config_version, decision.bucket) == (
        "realtime",
        "in_rollout",
        7,
        2684,
    )
    assert decide(config(), guards(), CALM, OUT_OF_BUCKET, now=NOW).reason == "outside_rollout"


def expected_reason(stop: bool, force: bool, enabled: bool, guard_open: bool, allowlisted: bool, in_bucket: bool):
    """The documented order, written as a plain first-match list."""
    for applies, reason in [
        (stop, "emergency_stop"),
        (force, "force_fallback"),
        (not enabled, "disabled"),
        (guard_open, "guard_open:error_rate"),
        (allowlisted, "allowlist"),
        (in_bucket, "in_rollout"),
    ]:
        if applies:
            return reason
    return "outside_rollout"


@pytest.mark.parametrize("case", list(itertools.product([False, True], repeat=6)))
def test_precedence_matrix(case):
    stop, force, enabled, guard_open, allowlisted, in_bucket = case
    session = IN_BUCKET if in_bucket else OUT_OF_BUCKET
    emergency = EmergencySnapshot(force_fallback=force, emergency_stop=stop)
    cfg = config(enabled=enabled, allowlist=[session] if allowlisted else [])
    guard_states = guards(error_rate="open") if guard_open else guards()
    decision = decide(cfg, guard_states, emergency, session, now=NOW)
    reason = expected_reason(*case)
    assert decision.reason == reason
    assert decision.mode == ("realtime" if reason in ("allowlist", "in_rollout") else "legacy")


def test_guards_are_consulted_in_order_cost_error_rate_latency_connection():
    assert GUARD_ORDER == ("cost", "error_rate", "latency", "connection")
    all_open = guards(**dict.fromkeys(GuardName.values, "open"))
    for name in GUARD_ORDER:
        assert decide(config(), all_open, CALM, IN_BUCKET, now=NOW).reason == f"guard_open:{name}"
        all_open[name] = GuardSnapshot(name, "closed")


def test_cooled_down_guard_admits_realtime_sessions_only_as_probes():
    cooled = guards()
    cooled["latency"] = GuardSnapshot("latency", "open", retry_at=NOW - timedelta(seconds=1))
    decision = decide(config(), cooled, CALM, IN_BUCKET, now=NOW)
    assert (decision.mode, decision.reason, decision.probe_guards) == ("realtime", "probe:latency", ("latency",))
    assert decide(config(), cooled, CALM, OUT_OF_BUCKET, now=NOW).probe_guards == ()


def test_half_open_guard_without_probe_slots_blocks():
    full = guards()
    full["connection"] = GuardSnapshot("connection", "half_open", half_open_since=NOW, probe_budget=0)
    assert decide(config(), full, CALM, IN_BUCKET, now=NOW).reason == "guard_open:connection"


def test_cost_guard_never_probes():
    cost = guards()
    cost["cost"] = GuardSnapshot("cost", "open", retry_at=NOW - timedelta(hours=1))
    assert decide(config(), cost, CALM, IN_BUCKET, now=NOW).reason == "guard_open:cost"


def test_stop_and_force_record_who_and_why():
    assert decide(config(), guards(), STOP, IN_BUCKET, now=NOW).detail == "user:ops: smoke"
    assert decide(config(), guards(), FORCE, IN_BUCKET, now=NOW).detail == "cli:ops: upstream incident"


class ExplodingSetting:
    """A setting whose value raises, standing in for any bug inside the evaluation."""

    source = "admin"

    @property
    def value(self):
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("cfg", "guard_states", "emergency", "session_id", "reason"),
    [
        (None, guards(), CALM, IN_BUCKET, "config_missing"),
        (config(), guards(), None, IN_BUCKET, "emergency_state_missing"),
        (config(), None, CALM, IN_BUCKET, "guard_state_missing"),
        (config(), {k: v for k, v in guards().items() if k != "latency"}, CALM, IN_BUCKET, "guard_state_missing"),
        (config(), {**guards(), "cost": GuardSnapshot("cost", "melted")}, CALM, IN_BUCKET, "policy_error"),
        (config(), guards(), CALM, None, "no_session_id"),
        (config(), guards(), CALM, "", "no_session_id"),
        (config(percent_bp=20000), guards(), CALM, IN_BUCKET, "config_invalid"),
        (config(percent_bp=None), guards(), CALM, IN_BUCKET, "config_invalid"),
        (config(enabled=None), guards(), CALM, IN_BUCKET, "disabled"),
        (replace(config(), enabled=ExplodingSetting()), guards(), CALM, IN_BUCKET, "policy_error"),
    ],
)
def test_any_doubt_gives_legacy_with_a_reason(cfg, guard_states, emergency, session_id, reason):
    decision = decide(cfg, guard_states, emergency, session_id, now=NOW)
    assert (decision.mode, decision.reason) == ("legacy", reason)
    assert decision.config_version == (7 if cfg else 0)


def test_policy_error_keeps_the_exception_in_the_detail():
    decision = decide(replace(config(), allowlist=None), guards(), CALM, IN_BUCKET, now=NOW)
    assert decision.reason == "policy_error"
    assert decision.detail.startswith("AttributeError")


# --- the service that reads the database ------------------------------------------------------------


@pytest.mark.django_db
def test_database_outage_gives_legacy_and_never_raises(monkeypatch):
    def unavailable(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(services, "load_emergency", unavailable)
    decision = services.decide_for_session("a")
    assert (decision.mode, decision.reason) == ("legacy", "state_unavailable")
    assert "database is locked" in decision.detail


@pytest.mark.django_db
def test_out_of_range_environment_percentage_gives_legacy(settings):
    settings.FEATURE_REALTIME_MODE_ENABLED = True
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 150
    decision = services.decide_for_session("a")
    assert (decision.mode, decision.reason) == ("legacy", "config_invalid")
    assert RoutingDecision.objects.get(session_id="a").reason == "config_invalid"


@pytest.mark.django_db
def test_explain_session_does_not_record(settings):
    settings.FEATURE_REALTIME_MODE_ENABLED = True
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 100
    assert services.explain_session("a").mode == "realtime"
    assert not RoutingDecision.objects.exists()


@pytest.mark.django_db
def test_missing_session_id_gives_legacy_with_nothing_to_pin(settings, caplog):
    settings.FEATURE_REALTIME_MODE_ENABLED = True
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 100
    assert services.decide_for_session(None).reason == "no_session_id"
    assert not RoutingDecision.objects.exists()  # nothing to pin a later reconnect to
    assert "no_session_id" in caplog.text
