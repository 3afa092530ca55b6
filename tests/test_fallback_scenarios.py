"""Upstream faults through the real kiosk socket: refused and rejected connections, bad certificates, stalls,
closed sockets, errors, slowness, expiry, noise, fragmentation, an emergency stop and many sessions at once.

Each case runs a Realtime session against the emulator (its fault knobs, or a TCP proxy in front of it),
then checks what the visitor and the staff rely on: the session continues (in Legacy where it must),
the collected visitor info and the in-flight utterance survive, exactly one fallback event is recorded
with the right reason, and no asyncio task is left behind.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python tests/test_fallback_scenarios.py`: this file's tests, under pytest's settings
    import sys
    from pathlib import Path

    import pytest

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(pytest.main([__file__, *sys.argv[1:]]))

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async

from fallback.emergency import apply_action
from fallback.models import FallbackEvent, FallbackReason, GuardState
from realtime.emulator import CallFunction, Say, ScriptedBrain
from realtime.emulator.audio import tone
from realtime.emulator.reception_brain import build_reception_brain
from reception.models import Visit
from tests.support.kiosk_client import collect_turn, collect_until, connect, last
from tests.support.realtime import assert_no_leaked_tasks
from tests.support.tcp_proxy import TcpProxy, silent_server, untrusted_tls_context
from tests.support.waiting import until

pytestmark = [
    pytest.mark.usefixtures("reference_prices"),  # Realtime admission needs prices
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
    pytest.mark.timeout(120),
]

NAME_TURN = "株式会社テストの山田太郎です。"
HOST_TURN = "鈴木さんと10時にお約束があります。"


def synthetic_voice(text: str, language: str | None) -> bytes:
    """The emulator's voice in these tests: a tone as long as the words (no speech models needed)."""
    return tone(max(200, 60 * len(text)))


@pytest.fixture
async def upstream(realtime_emulator, settings, kiosk_and_key):
    """Realtime on for every session, the kiosk's upstream is the emulator with a reception brain."""
    realtime_emulator.config.accepted_keys = None
    realtime_emulator.brain = build_reception_brain(transcribe=lambda pcm, language: "", synthesize=synthetic_voice)
    settings.REALTIME_API_URL = realtime_emulator.url
    settings.REALTIME_STALL_SECONDS = 1.0
    for action, params in (("enable", {}), ("set_rollout_percentage", {"percent": 100})):
        await database_sync_to_async(apply_action)(action, actor="test", reason="fault matrix", **params)
    return realtime_emulator


async def start(key: str, session_id: str, voice: bool = True) -> tuple[object, list[dict]]:
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": session_id, "language": "ja", "voice": voice})
    messages, _ = await collect_turn(ws)
    return ws, messages


async def say(ws, text: str) -> tuple[list[dict], bytes]:
    await ws.send_json_to({"type": "input_text", "text": text})
    return await collect_turn(ws)


async def say_through_fallback(ws, text: str) -> list[dict]:
    """Send a turn and collect until Legacy has answered it after a `mode.changed`."""
    await ws.send_json_to({"type": "input_text", "text": text})

    def answered_after_switch(message: dict, messages: list[dict]) -> bool:
        switched = any(m["type"] == "mode.changed" for m in messages[:-1])
        return switched and message["type"] == "response.done"

    messages, _ = await collect_until(ws, answered_after_switch)
    return messages


async def fallback_events(session_id: str) -> list[str]:
    return [event.reason async for event in FallbackEvent.objects.filter(session_id=session_id)]


async def finish(ws) -> None:
    await ws.disconnect()
    await assert_no_leaked_tasks()


def assert_survived(messages: list[dict]) -> None:
    """The name from before the fault is kept and the in-flight utterance was answered by Legacy."""
    switch = last(messages, "mode.changed")
    assert switch["mode"] == "legacy"
    visit = last(messages, "visit.updated")
    assert visit["visitor_name"].replace(" ", "") == "山田太郎", visit
    assert "鈴木" in visit["host_name"], visit
    assert visit["status"] == "confirming", visit


async def realtime_first_turn(key: str, session_id: str, voice: bool = True):
    ws, opening = await start(key, session_id, voice)
    assert opening[0]["type"] == "session.started" and opening[0]["mode"] == "realtime", opening[0]
    messages, audio = await say(ws, NAME_TURN)
    assert last(messages, "visit.updated")["visitor_name"].replace(" ", "") == "山田太郎"
    assert bool(audio) == voice, "a voice kiosk hears the Realtime answer, a typing one reads it"
    return ws


# --- faults while the session starts: Legacy greets instead ---------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "case"),
    [
        ({"refuse_connections": True}, "connection refused"),
        ({"handshake_status": 401}, "401 at upgrade"),
        ({"handshake_status": 403}, "403 at upgrade"),
        ({"handshake_status": 429, "retry_after_seconds": 1}, "429 at upgrade"),
        ({"handshake_status": 500}, "500 at upgrade"),
        ({"close_code": 1008, "close_after_events": 0}, "accept, then 1008"),
    ],
)
async def test_fault_at_start_greets_in_legacy(upstream, kiosk_and_key, fault, case):
    _, key = kiosk_and_key
    upstream.set_faults(**fault)
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": "start-fault", "language": "ja"})
    messages, _ = await collect_until(
        ws, lambda m, ms: m["type"] == "response.done" and any(x["type"] == "mode.changed" for x in ms)
    )
    assert messages[0]["mode"] == "realtime"
    assert last(messages, "mode.changed") == {"type": "mode.changed", "mode": "legacy", "reason": "connection_error"}
    assert "いらっしゃいませ" in last(messages, "transcript", "assistant")["text"]  # the greeting, from Legacy
    upstream.set_faults(refuse_connections=False, handshake_status=None, close_code=None)
    messages, _ = await say(ws, NAME_TURN)
    assert last(messages, "visit.updated")["visitor_name"].replace(" ", "") == "山田太郎"
    assert await fallback_events("start-fault") == [FallbackReason.CONNECTION_ERROR], case
    await finish(ws)


async def test_rejected_key_opens_the_connection_guard_at_once(upstream, kiosk_and_key):
    _, key = kiosk_and_key
    upstream.set_faults(handshake_status=401)
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": "bad-key", "language": "ja"})
    await collect_until(ws, lambda m, ms: m["type"] == "response.done")
    guard = await GuardState.objects.aget(name="connection")
    assert guard.state == "open"
    await finish(ws)
    # The next session is not even tried on Realtime.
    ws, opening = await start(key, "after-bad-key")
    assert opening[0]["mode"] == "legacy" and opening[0]["reason"] == "guard_open:connection"
    await finish(ws)


async def test_untrusted_certificate_falls_back_without_retrying(upstream, kiosk_and_key, settings, tmp_path):
    _, key = kiosk_and_key
    proxy = TcpProxy(upstream.port, ssl_context=untrusted_tls_context(tmp_path))
    await proxy.start()
    settings.REALTIME_API_URL = f"wss://127.0.0.1:{proxy.port}/v1/realtime"
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": "tls", "language": "ja"})
    messages, _ = await collect_until(ws, lambda m, ms: m["type"] == "response.done")
    assert last(messages, "mode.changed")["reason"] == "connection_error"
    assert upstream.handshakes == 0  # nothing reached the service: verification failed first
    assert await fallback_events("tls") == [FallbackReason.CONNECTION_ERROR]
    await finish(ws)
    await proxy.stop()


async def test_stalled_handshake_falls_back(upstream, kiosk_and_key, settings):
    _, key = kiosk_and_key
    server, port = await silent_server()
    settings.REALTIME_API_URL = f"ws://127.0.0.1:{port}/v1/realtime"
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": "stalled-handshake", "language": "ja"})
    messages, _ = await collect_until(ws, lambda m, ms: m["type"] == "response.done", wait=20)
    assert last(messages, "mode.changed")["reason"] == "connection_error"
    assert await fallback_events("stalled-handshake") == [FallbackReason.CONNECTION_ERROR]
    await finish(ws)
    server.close()
    await server.wait_closed()


# --- faults in the middle of a conversation: the in-flight utterance is answered by Legacy --------------------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"close_code": 1006, "close_after_events": 0}, FallbackReason.CONNECTION_ERROR),
        ({"close_code": 1011, "close_after_events": 0}, FallbackReason.CONNECTION_ERROR),
        ({"error_code": "rate_limit_exceeded", "error_after_events": 0}, FallbackReason.UPSTREAM_ERROR),
        ({"error_code": "server_error", "error_after_events": 0}, FallbackReason.UPSTREAM_ERROR),
        ({"stall": True}, FallbackReason.CONNECTION_ERROR),
    ],
)
async def test_fault_mid_conversation_continues_in_legacy(upstream, kiosk_and_key, fault, reason):
    _, key = kiosk_and_key
    ws = await realtime_first_turn(key, "mid-fault")
    upstream.set_faults(**fault)
    messages = await say_through_fallback(ws, HOST_TURN)
    assert_survived(messages)
    assert last(messages, "mode.changed")["reason"] == reason.lower()
    assert await fallback_events("mid-fault") == [reason]
    messages, _ = await say(ws, "はい")
    assert last(messages, "visit.updated")["status"] == "host_notified"
    await finish(ws)


async def test_slow_upstream_falls_back_on_the_first_audio_deadline(upstream, kiosk_and_key, settings):
    _, key = kiosk_and_key
    settings.REALTIME_FIRST_AUDIO_DEADLINE_SECONDS = 1.0
    settings.REALTIME_STALL_SECONDS = 30.0
    ws = await realtime_first_turn(key, "slow")
    upstream.set_faults(latency_ms=2000)
    messages = await say_through_fallback(ws, HOST_TURN)
    assert_survived(messages)
    assert await fallback_events("slow") == [FallbackReason.LATENCY]
    await finish(ws)


# --- a reply the kiosk is owed when the upstream goes silent: Legacy says it ---------------------------------


def hanging_voice(hang: dict):
    """The emulator's voice, stuck (as a stalled upstream is) on replies holding `hang["words"]` while `hang["on"]`."""

    def voice(text: str, language: str | None) -> bytes:
        deadline = time.monotonic() + 3
        while hang["on"] and hang["words"] in text and time.monotonic() < deadline:
            time.sleep(0.05)
        return synthetic_voice(text, language)

    return voice


async def test_a_greeting_stuck_upstream_is_said_by_legacy(upstream, kiosk_and_key):
    _, key = kiosk_and_key
    hang = {"on": True, "words": "いらっしゃいませ"}
    upstream.brain = build_reception_brain(transcribe=lambda pcm, language: "", synthesize=hanging_voice(hang))
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": "stuck-greeting", "language": "ja", "voice": True})
    messages, _ = await collect_until(ws, lambda m, ms: m["type"] in ("response.done", "error"), wait=10)
    hang["on"] = False
    assert last(messages, "mode.changed")["reason"] == "connection_error"
    assert "いらっしゃいませ" in last(messages, "transcript", "assistant")["text"]  # the greeting, from Legacy
    assert await fallback_events("stuck-greeting") == [FallbackReason.CONNECTION_ERROR]
    await finish(ws)


class HostCallBrain(ScriptedBrain):
    """Calls the tool for the host turn at once, then says the tool's reply in a voice that hangs."""

    def __init__(self, voice) -> None:
        super().__init__([CallFunction("collect_visitor_info", {"host_name": "鈴木", "purpose": "10時にお約束"})])
        self.voice = voice

    async def respond(self, context):
        if context.function_outputs:
            return Say(json.loads(context.function_outputs[-1]["output"])["reply"])
        return await super().respond(context)

    async def synthesize(self, text: str, language: str | None) -> bytes:
        return await asyncio.to_thread(self.voice, text, language)


async def test_a_reply_stuck_upstream_after_its_function_call_is_said_by_legacy(upstream, kiosk_and_key):
    _, key = kiosk_and_key
    hang = {"on": True, "words": "確認いたします"}
    ws = await realtime_first_turn(key, "stuck-reply")
    upstream.brain = HostCallBrain(hanging_voice(hang))
    messages = await say_through_fallback(ws, HOST_TURN)  # the workflow has the turn; its reply is never spoken
    hang["on"] = False
    assert [m["type"] for m in messages].index("visit.updated") < [m["type"] for m in messages].index("mode.changed")
    assert_survived(messages)
    assert "鈴木" in last(messages, "transcript", "assistant")["text"]  # the confirmation, said by Legacy
    assert await fallback_events("stuck-reply") == [FallbackReason.CONNECTION_ERROR]
    await finish(ws)


# --- what must NOT fall back ------------------------------------------------------------------------------------


async def test_session_expiry_renews_the_upstream_without_the_visitor_noticing(upstream, kiosk_and_key):
    _, key = kiosk_and_key
    ws = await realtime_first_turn(key, "expiring")
    upstream.sessions[0].expire()  # `session_expired`, then close 1001, as at the 60-minute limit
    await until(lambda: len(upstream.sessions) == 2, what="a second upstream session opened after the expiry")
    messages, audio = await say(ws, HOST_TURN)
    assert not [m for m in messages if m["type"] in ("mode.changed", "error")]
    assert last(messages, "visit.updated")["status"] == "confirming" and audio
    assert len(upstream.sessions) == 2  # a new upstream session carried the conversation on
    assert await fallback_events("expiring") == []
    await finish(ws)


@pytest.mark.parametrize(
    "fault",
    [
        {"error_code": "response_cancel_not_active", "error_after_events": 0},  # a harmless error
        {"malformed": "non_json", "malformed_after_events": 0},
        {"malformed": "missing_type", "malformed_after_events": 0},
        {"malformed": "unknown_type", "malformed_after_events": 0},
        {"malformed": "binary", "malformed_after_events": 0},
    ],
)
async def test_harmless_upstream_noise_keeps_the_session_on_realtime(upstream, kiosk_and_key, fault):
    _, key = kiosk_and_key
    ws = await realtime_first_turn(key, "noise")
    upstream.set_faults(**fault)
    messages, audio = await say(ws, HOST_TURN)
    assert not [m for m in messages if m["type"] == "mode.changed"]
    assert last(messages, "visit.updated")["status"] == "confirming" and audio
    assert await fallback_events("noise") == []
    await finish(ws)


async def test_fragmented_stream_changes_nothing(upstream, kiosk_and_key, settings):
    _, key = kiosk_and_key
    proxy = TcpProxy(upstream.port, slice_bytes=256, delay=0.001)  # every frame in many pieces, faster than real time
    await proxy.start()
    settings.REALTIME_API_URL = f"ws://127.0.0.1:{proxy.port}/v1/realtime"
    ws = await realtime_first_turn(key, "fragmented")
    messages, audio = await say(ws, HOST_TURN)
    assert last(messages, "visit.updated")["status"] == "confirming" and audio
    assert await fallback_events("fragmented") == []
    await finish(ws)
    await proxy.stop()


# --- emergency stop and many sessions -------------------------------------------------------------------------


async def test_emergency_stop_moves_a_live_session_to_legacy(upstream, kiosk_and_key):
    _, key = kiosk_and_key
    ws = await realtime_first_turn(key, "stopped")
    await database_sync_to_async(apply_action)("emergency_stop", actor="test", reason="drill")
    messages, _ = await collect_until(ws, lambda m, ms: m["type"] == "mode.changed", wait=5)
    assert last(messages, "mode.changed") == {"type": "mode.changed", "mode": "legacy", "reason": "emergency_stop"}
    messages, _ = await say(ws, HOST_TURN)
    assert last(messages, "visit.updated")["visitor_name"].replace(" ", "") == "山田太郎"
    assert await fallback_events("stopped") == [FallbackReason.EMERGENCY_STOP]
    await finish(ws)


async def test_twenty_sessions_half_of_them_losing_their_upstream(upstream, kiosk_and_key, settings):
    """20 sessions; the upstream of 10 is cut mid-conversation. Every visit completes exactly once."""
    _, key = kiosk_and_key
    settings.REALTIME_STALL_SECONDS = 10.0  # 20 sessions on 2 cores: only the cut ones may fail
    proxy = TcpProxy(upstream.port)
    await proxy.start()
    direct = settings.REALTIME_API_URL
    sockets = {}
    for index in range(20):
        cut = index % 2 == 0
        settings.REALTIME_API_URL = f"ws://127.0.0.1:{proxy.port}/v1/realtime" if cut else direct
        sockets[f"crowd-{index}"] = (await realtime_first_turn(key, f"crowd-{index}", voice=False), cut)
    settings.REALTIME_API_URL = direct
    proxy.kill()

    async def complete(session_id: str, ws, cut: bool) -> None:
        if cut:
            messages = await say_through_fallback(ws, HOST_TURN)
            assert_survived(messages)
        else:
            messages, _ = await say(ws, HOST_TURN)
            assert last(messages, "visit.updated")["status"] == "confirming"
        messages, _ = await say(ws, "はい")
        assert last(messages, "visit.updated")["status"] == "host_notified"
        await ws.send_json_to({"type": "session.end"})
        ended = await ws.receive_json_from(timeout=10)
        assert ended["type"] == "session.ended"

    await asyncio.gather(*(complete(session_id, ws, cut) for session_id, (ws, cut) in sockets.items()))
    visits = [visit async for visit in Visit.objects.filter(session_id__startswith="crowd-")]
    assert len(visits) == 20
    assert {visit.status for visit in visits} == {"host_notified"}
    assert all(visit.visitor_name.replace(" ", "") == "山田太郎" for visit in visits)
    events = [event async for event in FallbackEvent.objects.filter(session_id__startswith="crowd-")]
    assert sorted(event.session_id for event in events) == sorted(s for s, (_, cut) in sockets.items() if cut)
    for ws, _ in sockets.values():
        await ws.disconnect()
    await assert_no_leaked_tasks()
    await proxy.stop()


async def test_a_stop_from_another_process_reaches_live_sessions_without_redis(upstream, kiosk_and_key, monkeypatch):
    """`manage.py emergency_stop` runs in its own process: on the in-process layer its broadcast reaches
    nobody, so the server's watch on the shared state must relay it."""
    _, key = kiosk_and_key
    ws = await realtime_first_turn(key, "cli-stop")
    monkeypatch.setattr("fallback.emergency.broadcast", lambda message: None)  # as from another process
    await database_sync_to_async(apply_action)("emergency_stop", actor="cli:test", reason="drill")
    messages, _ = await collect_until(ws, lambda m, ms: m["type"] == "mode.changed", wait=5)
    assert last(messages, "mode.changed")["reason"] == "emergency_stop"
    assert await fallback_events("cli-stop") == [FallbackReason.EMERGENCY_STOP]
    await finish(ws)
