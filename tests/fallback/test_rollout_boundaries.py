"""The boundaries of the rollout percentage: a session is in exactly when its bucket is below it, 0 % and 100 %,
and a Realtime session that returns after the hour's spend passed the limit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fallback import guards
from fallback.models import FallbackEvent, FallbackReason, RoutingDecision
from fallback.services import decide_for_session, explain_session
from tests.fallback.routing_model import EDGE_BUCKETS, act, ids_by_bucket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_prices")]


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
    """Its own hold would still admit it; its next turn would spend past the limit (a case the state machine found)."""
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
