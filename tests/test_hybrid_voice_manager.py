"""HybridVoiceManager: the path is decided once per session, the allowlist, and cost admission.

The emergency stop across server processes is in test_emergency_multiprocess.py."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from fallback.emergency import apply_action
from fallback.models import FallbackEvent, RoutingDecision
from metrics.cost import cost_of_realtime_usage
from metrics.ledger import spend_last_hour
from realtime.emulator.audio import tone
from realtime.emulator.reception_brain import build_reception_brain
from reception import workflow
from tests.support.kiosk_client import collect_turn, collect_until, connect, last
from tests.support.realtime import assert_no_leaked_tasks
from tests.support.waiting import until
from voice.hybrid import conversation_of, visit_outcome

pytestmark = pytest.mark.usefixtures("reference_prices")  # Realtime admission needs prices


def synthetic_voice(text: str, language: str | None) -> bytes:
    return tone(max(200, 60 * len(text)))


async def act(action: str, **params) -> None:
    await database_sync_to_async(apply_action)(action, actor="test", reason="hybrid test", **params)


async def opening(key: str, session_id: str) -> tuple[object, list[dict]]:
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": session_id, "language": "ja"})
    messages, _ = await collect_turn(ws)
    return ws, messages


@pytest.fixture
async def emulator(realtime_emulator, settings):
    realtime_emulator.config.accepted_keys = None
    realtime_emulator.brain = build_reception_brain(transcribe=lambda pcm, language: "", synthesize=synthetic_voice)
    settings.REALTIME_API_URL = realtime_emulator.url
    return realtime_emulator


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_the_path_is_decided_once_and_kept_for_the_session(emulator, kiosk_and_key):
    _, key = kiosk_and_key
    await act("enable")
    await act("set_rollout_percentage", percent=100)
    ws, messages = await opening(key, "sticky-session")
    assert messages[0] == {
        "type": "session.started",
        "session_id": "sticky-session",
        "mode": "realtime",
        "reason": "in_rollout",
    }
    # Lowering the rollout does not move a live session: the decision was made at its start.
    await act("set_rollout_percentage", percent=0)
    await ws.send_json_to({"type": "input_text", "text": "株式会社テストの山田太郎です。"})
    turn, _ = await collect_turn(ws)
    assert not [m for m in turn if m["type"] == "mode.changed"]
    decisions = [d async for d in RoutingDecision.objects.filter(session_id="sticky-session")]
    assert len(decisions) == 1 and decisions[0].mode == "realtime" and decisions[0].reason == "in_rollout"
    await ws.disconnect()
    # The kiosk drops without session.end and comes back with the same id: same path, same reason, one record.
    ws, messages = await opening(key, "sticky-session")
    assert (messages[0]["mode"], messages[0]["reason"]) == ("realtime", "in_rollout")
    assert await RoutingDecision.objects.filter(session_id="sticky-session").acount() == 1
    await ws.disconnect()
    await assert_no_leaked_tasks()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_allowlisted_session_gets_realtime_at_zero_percent(emulator, kiosk_and_key):
    _, key = kiosk_and_key
    await act("enable")
    await act("allowlist_add", session_id="vip-1")
    ws, messages = await opening(key, "vip-1")
    assert messages[0]["mode"] == "realtime" and messages[0]["reason"] == "allowlist"
    await ws.disconnect()
    ws, messages = await opening(key, "not-vip")
    assert messages[0]["mode"] == "legacy" and messages[0]["reason"] == "outside_rollout"
    await ws.disconnect()
    await assert_no_leaked_tasks()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_a_session_that_would_overrun_the_hourly_cost_limit_starts_on_legacy(emulator, kiosk_and_key):
    _, key = kiosk_and_key
    await act("enable")
    await act("set_rollout_percentage", percent=100)
    await act("set_cost_limit", cost_limit=0.01)  # below one session's reservation
    ws, messages = await opening(key, "too-dear")
    assert messages[0]["mode"] == "legacy" and messages[0]["reason"] == "cost_limit"
    assert "いらっしゃいませ" in last(messages, "transcript", "assistant")["text"]
    assert emulator.handshakes == 0
    await ws.disconnect()
    await assert_no_leaked_tasks()


async def spend() -> Decimal:
    return await database_sync_to_async(spend_last_hour)()


async def wait_for_spend(above: Decimal) -> Decimal:
    """The session prices each response as soon as it is done; wait (bounded) until it is in the hour."""

    async def spend_above() -> Decimal | None:
        total = await spend()
        return total if total > above else None

    return await until(spend_above, within=2.0, what=f"a spend above {above} USD in the hour")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_a_live_session_moves_to_legacy_at_its_turn_boundary_once_the_hour_passes_the_limit(
    emulator, kiosk_and_key, settings
):
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.000001
    _, key = kiosk_and_key
    await act("enable", percent=100)
    ws, messages = await opening(key, "spender")
    assert messages[0]["mode"] == "realtime"
    greeting = await wait_for_spend(Decimal(0))
    await act("set_cost_limit", cost_limit=float(greeting) * 1.5)  # the next reply passes it
    await ws.send_json_to({"type": "input_text", "text": "株式会社テストの山田太郎です。"})
    turn, _ = await collect_until(ws, lambda message, _: message["type"] == "mode.changed")
    # The visitor's turn was answered on Realtime before the move.
    assert [m["status"] for m in turn if m["type"] == "response.done"] == ["completed"]
    assert turn[-1] == {"type": "mode.changed", "mode": "legacy", "reason": "cost_limit"}
    # The next turn is Legacy's, and nothing collected is asked again.
    await ws.send_json_to({"type": "input_text", "text": "鈴木さんに会いに来ました。"})
    after, _ = await collect_turn(ws)
    assert not [m for m in after if m["type"] == "mode.changed"]
    visit = last(after, "visit.updated")
    assert (visit["visitor_name"], visit["company_name"]) == ("山田太郎", "株式会社テスト")
    events = [e async for e in FallbackEvent.objects.filter(session_id="spender")]
    assert [e.reason for e in events] == ["COST_LIMIT"]
    # New sessions are refused meanwhile.
    ws2, messages2 = await opening(key, "newcomer")
    assert (messages2[0]["mode"], messages2[0]["reason"]) == ("legacy", "guard_open:cost")
    await ws2.disconnect()
    await ws.disconnect()
    await assert_no_leaked_tasks()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_a_reply_in_flight_at_session_end_is_paid_for(emulator, kiosk_and_key, settings):
    """session.end while the upstream is still answering: the reply is cancelled and its usage awaited, so the
    hour's spend equals every usage the upstream reported."""
    _, key = kiosk_and_key
    await act("enable", percent=100)
    ws, _ = await opening(key, "leaving")
    emulator.set_faults(latency_ms=300)  # the reply's events are still on their way when the kiosk leaves
    await ws.send_json_to({"type": "input_text", "text": "株式会社テストの山田太郎です。"})
    await ws.send_json_to({"type": "session.end"})
    ended, _ = await collect_until(ws, lambda message, _: message["type"] == "session.ended")
    assert ended[-1]["reason"] == "client_ended"
    reported = [e["response"]["usage"] for e in emulator.sent if e.get("type") == "response.done"]
    assert len(reported) == 2  # the greeting and the reply cut off by the end
    expected = sum(
        [(await database_sync_to_async(cost_of_realtime_usage)(settings.REALTIME_MODEL, u))[0] for u in reported],
        Decimal(0),
    )
    assert await spend() == expected
    await ws.disconnect()
    await assert_no_leaked_tasks()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_kiosks_that_drop_and_come_back_keep_their_path_while_the_rollout_moves(emulator, kiosk_and_key):
    """Kiosks start at 25 %, drop without session.end, the rollout moves to 60 %, they come back with the same
    session id: none changes path. (RECONNECT_SESSIONS=160 runs the issue's full figure.)"""
    _, key = kiosk_and_key
    count = int(os.environ.get("RECONNECT_SESSIONS", "24"))
    ids = [f"kiosk-{n:03d}" for n in range(count)]
    await act("enable", percent=25)

    async def start_and_drop(session_id: str) -> tuple[str, str]:
        ws, messages = await opening(key, session_id)
        await ws.disconnect()
        return messages[0]["mode"], messages[0]["reason"]

    first = [await start_and_drop(sid) for sid in ids]
    await act("set_rollout_percentage", percent=60)
    again = [await start_and_drop(sid) for sid in ids]
    assert [sid for sid, a, b in zip(ids, first, again, strict=True) if a != b] == []
    assert {mode for mode, _ in first} == {"realtime", "legacy"}
    assert await RoutingDecision.objects.acount() == count
    await assert_no_leaked_tasks()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("finished", "to_desk", "ended", "recorded"),
    [
        (True, False, "completed", "completed"),
        (True, True, "completed", "handed_off"),
        (True, False, "abandoned", "completed"),  # the visitor walked away after the reception finished
        (False, False, "completed", "abandoned"),  # the kiosk ended the session before the reception finished
        (False, False, "error", "error"),
    ],
)
def test_the_recorded_outcome_is_where_the_reception_got_to(finished, to_desk, ended, recorded):
    quality = workflow.VisitQuality(3, 0, 0, finished, to_desk, 30.0 if finished else None)
    assert visit_outcome(quality, ended) == recorded
    assert visit_outcome(None, ended) == ended  # a session the workflow never saw keeps how it ended
    assert conversation_of(quality).visitor_turns == 3 and conversation_of(None).visitor_turns == 0
