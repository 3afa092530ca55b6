"""Sticky bucketing, allowlist, stages and config sources of the Realtime rollout."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from fallback.bucketing import bucket_bp, percent_to_bp
from fallback.config import load_config, load_cost_limit, load_emergency
from fallback.emergency import ActionError, apply_action
from fallback.models import DEFAULT_SALT, GuardState, RolloutConfig, RoutingDecision
from fallback.services import decide_for_session, explain_session

SALT = DEFAULT_SALT
session_ids = st.text(min_size=1, max_size=64)
percents = st.integers(min_value=0, max_value=10000)

GOLDEN = {
    "kiosk-01:sess-0001": 5326,
    "kiosk-01:sess-0002": 7228,
    "00000000-0000-0000-0000-000000000000": 571,
    "a": 2684,
    "session-42": 3596,
}


def act(action: str, **params) -> None:
    apply_action(action, actor="test:rollout", reason="test", **params)


# --- bucketing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("session_id", "bucket"), GOLDEN.items())
def test_golden_bucket_vectors(session_id, bucket):
    assert bucket_bp(SALT, session_id) == bucket


def test_same_session_same_bucket_on_every_process():
    """Another interpreter (another hash seed) computes the same buckets: nothing depends on process state."""
    code = (
        "import json, sys; from fallback.bucketing import bucket_bp; "
        f"print(json.dumps({{s: bucket_bp({SALT!r}, s) for s in {list(GOLDEN)!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}
    )
    assert json.loads(out.stdout) == GOLDEN


@given(session_ids)
def test_bucket_is_sticky_and_in_range(session_id):
    assert bucket_bp(SALT, session_id) == bucket_bp(SALT, session_id)
    assert 0 <= bucket_bp(SALT, session_id) <= 9999


@given(session_ids, percents, percents)
def test_raising_the_percentage_only_adds_sessions(session_id, p1, p2):
    low, high = sorted((p1, p2))
    if bucket_bp(SALT, session_id) < low:
        assert bucket_bp(SALT, session_id) < high


@given(session_ids)
def test_zero_admits_nobody_and_hundred_admits_everybody(session_id):
    assert not bucket_bp(SALT, session_id) < 0
    assert bucket_bp(SALT, session_id) < 10000


@pytest.mark.parametrize("percent", [1, 10, 50])
def test_buckets_are_uniform_within_a_third_of_a_point(percent):
    ids = [uuid.UUID(int=i * 7919 + 1).hex for i in range(200_000)]
    share = sum(bucket_bp(SALT, s) < percent * 100 for s in ids) / len(ids) * 100
    assert abs(share - percent) < 0.3


def test_another_salt_reshuffles_the_buckets():
    ids = [f"s{i}" for i in range(1000)]
    same = sum(bucket_bp(SALT, s) == bucket_bp("other-salt", s) for s in ids)
    assert same < 10


@pytest.mark.parametrize(("percent", "bp"), [(0, 0), (12.5, 1250), (0.01, 1), (99.99, 9999), (100, 10000)])
def test_percentages_become_basis_points(percent, bp):
    assert percent_to_bp(percent) == bp


@pytest.mark.parametrize("percent", [-0.01, 100.01, float("nan"), float("inf")])
def test_out_of_range_percentages_are_refused(percent):
    with pytest.raises(ValueError, match="between 0 and 100"):
        percent_to_bp(percent)


# --- sessions through the database -----------------------------------------------------------------


@pytest.mark.django_db
def test_decision_is_recorded_with_reason_and_config_version():
    act("enable")
    act("set_rollout_percentage", percent=50)
    version = RolloutConfig.load().version
    decision = decide_for_session("a")  # bucket 2684
    assert (decision.mode, decision.reason, decision.config_version) == ("realtime", "in_rollout", version)
    row = RoutingDecision.objects.get(session_id="a")
    assert (row.mode, row.reason, row.bucket, row.config_version) == ("realtime", "in_rollout", 2684, version)
    assert decide_for_session("kiosk-01:sess-0002").reason == "outside_rollout"  # bucket 7228


@pytest.mark.django_db
def test_allowlisted_session_gets_realtime_at_zero_percent_but_not_when_disabled():
    # explain_session is the same decision without recording it, so one id can be asked under each config.
    act("allowlist_add", session_id="qa-kiosk-1")
    assert explain_session("qa-kiosk-1").reason == "disabled"
    act("enable")
    assert explain_session("qa-kiosk-1").reason == "allowlist"
    assert decide_for_session("someone-else").reason == "outside_rollout"
    act("allowlist_remove", session_id="qa-kiosk-1")
    assert explain_session("qa-kiosk-1").reason == "outside_rollout"
    assert not RoutingDecision.objects.filter(session_id="qa-kiosk-1").exists()


@pytest.mark.django_db
def test_env_allowlist_is_merged_with_admin_entries(settings):
    settings.FEATURE_REALTIME_ALLOWLIST_SESSIONS = ["env-session"]
    act("allowlist_add", session_id="admin-session")
    config = load_config()
    assert config.allowlist.value == {"env-session", "admin-session"}
    assert config.allowlist.source == "admin"


@pytest.mark.django_db
def test_allowlist_refuses_malformed_session_ids():
    with pytest.raises(ActionError, match="Invalid session id"):
        act("allowlist_add", session_id="has spaces")


# --- stages ------------------------------------------------------------------------------------------


@pytest.fixture
def metric_gates_green(monkeypatch):
    """These tests are about order, soak and guards; the Realtime/Legacy comparisons are in test_promotion_gates."""
    monkeypatch.setattr("fallback.gates._metric_gates", lambda since, now: [])


@pytest.mark.django_db
def test_stages_go_one_step_at_a_time_after_their_soak(metric_gates_green):
    start = timezone.now()
    apply_action("set_stage", actor="t", reason="start", stage="s1", now=start)
    assert RolloutConfig.load().percent_bp == 100
    with pytest.raises(ActionError, match="cannot be skipped"):
        apply_action("set_stage", actor="t", reason="jump", stage="s50", now=start)
    with pytest.raises(ActionError, match="soaked"):
        apply_action("set_stage", actor="t", reason="early", stage="s10", now=start + timedelta(hours=23))
    apply_action("set_stage", actor="t", reason="soaked", stage="s10", now=start + timedelta(hours=24))
    config = RolloutConfig.load()
    assert (config.stage, config.percent_bp) == ("s10", 1000)


@pytest.mark.django_db
def test_promotion_waits_for_closed_guards_but_demotion_does_not(metric_gates_green):
    start = timezone.now() - timedelta(days=3)
    apply_action("set_stage", actor="t", reason="start", stage="s1", now=start)
    apply_action("set_stage", actor="t", reason="next", stage="s10", now=start + timedelta(hours=25))
    GuardState.objects.filter(name="latency").update(state="open")
    with pytest.raises(ActionError, match="guards not closed: latency"):
        act("set_stage", stage="s50")
    act("set_stage", stage="s1")
    assert RolloutConfig.load().percent_bp == 100


@pytest.mark.django_db
def test_stage_override_is_recorded_in_the_audit_trail():
    result = apply_action("set_stage", actor="user:boss", reason="pilot done", stage="s1", override=True)
    result = apply_action("set_stage", actor="user:boss", reason="pilot done", stage="s50", override=True)
    assert "cannot be skipped" in result.after["override"]
    assert RolloutConfig.load().stage == "s50"


@pytest.mark.django_db
def test_setting_a_percentage_leaves_the_named_stages():
    act("set_stage", stage="s1")
    act("set_rollout_percentage", percent=2.5)
    config = RolloutConfig.load()
    assert (config.stage, config.percent_bp) == ("", 250)


# --- config sources ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_config_sources_code_env_admin_forced(settings, monkeypatch):
    monkeypatch.delenv("FEATURE_REALTIME_MODE_ENABLED", raising=False)
    monkeypatch.delenv("FEATURE_REALTIME_ROLLOUT_PERCENTAGE", raising=False)
    config = load_config()
    assert (config.enabled.value, config.enabled.source) == (False, "code")

    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 12.5
    config = load_config()
    assert (config.percent_bp.value, config.percent_bp.source) == (1250, "env")

    act("set_rollout_percentage", percent=30)
    config = load_config()
    assert (config.percent_bp.value, config.percent_bp.source, config.percent_bp.env_default) == (3000, "admin", 1250)

    act("enable")
    act("force_fallback")
    config = load_config(load_emergency())
    assert (config.enabled.value, config.enabled.source) == (False, "forced")
    assert "force fallback by test:rollout" in config.enabled.note

    act("use_env_defaults")
    config = load_config()
    assert (config.percent_bp.value, config.percent_bp.source) == (1250, "env")


@pytest.mark.django_db
def test_the_cost_limit_alone_is_the_configs_in_every_source(settings):
    """Every priced response reads the limit alone (one query): it must be what the whole config says."""
    RolloutConfig.objects.all().delete()  # no row yet: the environment's limit
    settings.REALTIME_COST_LIMIT_PER_HOUR = 7.5
    assert load_cost_limit() == load_config().cost_limit_per_hour.value == 7.5
    act("set_cost_limit", cost_limit=2.25)
    assert load_cost_limit() == load_config().cost_limit_per_hour.value == 2.25
    act("use_env_defaults")
    assert load_cost_limit() == load_config().cost_limit_per_hour.value == 7.5


@pytest.mark.django_db
def test_variable_set_in_the_environment_shows_as_env_even_at_its_default(monkeypatch):
    monkeypatch.setenv("FEATURE_REALTIME_MODE_ENABLED", "false")
    assert load_config().enabled.source == "env"


@pytest.mark.django_db
def test_every_change_raises_the_config_version():
    before = RolloutConfig.load().version
    act("enable")
    act("set_rollout_percentage", percent=5)
    assert RolloutConfig.load().version == before + 2
