"""HybridVoiceManager: the path is decided once per session, the allowlist, and cost admission.

The emergency stop across server processes is in test_emergency_multiprocess.py."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from fallback.emergency import apply_action
from fallback.models import RoutingDecision
from realtime.emulator.audio import tone
from realtime.emulator.reception_brain import build_reception_brain
from tests.kiosk_client import collect_turn, connect, last
from tests.metrics_fixtures import reference_prices  # noqa: F401  (Realtime admission needs prices)
from tests.realtime_fixtures import assert_no_leaked_tasks

pytest_plugins = ["tests.realtime_fixtures"]


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
