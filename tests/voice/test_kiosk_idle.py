"""A kiosk that forgets: the idle watchdog through the real consumer, and the clean-up of crashed sessions.

Where the test needs to say "time has passed" it moves the watchdog's clock (`IdleWatchdog.clock`), so
no assertion depends on how fast the machine is; only the first test runs on the real clock.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from fallback.emergency import apply_action
from realtime.emulator.audio import tone
from realtime.emulator.reception_brain import build_reception_brain
from reception import workflow
from reception.models import Visit
from tests.support.kiosk_client import collect_turn, collect_until, connect, last
from voice.idle import IdleWatchdog
from voice.legacy import LegacyAudioService

pytestmark = [
    pytest.mark.usefixtures("reference_prices"),  # Realtime admission needs prices
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
]

NAME = "株式会社テストの山田太郎です。"
QUIET = 1.0  # real seconds in which a watchdog that fires wrongly would fire (it checks every 0.3 s)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(IdleWatchdog, "clock", staticmethod(fake))
    return fake


@pytest.fixture(autouse=True)
def short_timeout(settings):
    settings.KIOSK_IDLE_TIMEOUT_SECONDS = 0.3


async def start(ws, **fields) -> list[dict]:
    await ws.send_json_to({"type": "session.start", **fields})
    messages, _ = await collect_turn(ws, wait=10)
    return messages


async def say(ws, text: str) -> list[dict]:
    await ws.send_json_to({"type": "input_text", "text": text})
    messages, _ = await collect_turn(ws, wait=10)
    return messages


async def expect_idle_end(ws) -> dict:
    """The session ends as idle and the server closes the socket."""
    ended = await ws.receive_json_from(timeout=10)
    assert ended["type"] == "session.ended" and ended["reason"] == "idle", ended
    assert (await ws.receive_output(timeout=10))["type"] == "websocket.close"
    await ws.disconnect()  # as the browser answers the close
    return ended


@database_sync_to_async
def visit_status(session_id: str) -> str:
    return Visit.objects.get(session_id=session_id).status


@pytest.mark.asyncio
async def test_a_visitor_who_walks_away_is_forgotten_and_the_visit_abandoned(kiosk_and_key):
    ws = await connect(kiosk_and_key[1])
    session_id = last(await start(ws), "session.started")["session_id"]
    assert "山田" in last(await say(ws, NAME), "visit.updated")["visitor_name"]

    ended = await expect_idle_end(ws)

    assert await visit_status(session_id) == Visit.Status.ABANDONED
    assert ended["visit_id"] == (await database_sync_to_async(Visit.objects.get)(session_id=session_id)).pk
    assert workflow.snapshot(session_id).visit["status"] == Visit.Status.ABANDONED


@pytest.mark.asyncio
async def test_a_realtime_session_is_forgotten_too(realtime_emulator, settings, kiosk_and_key):
    realtime_emulator.config.accepted_keys = None
    realtime_emulator.brain = build_reception_brain(
        transcribe=lambda pcm, language: "", synthesize=lambda text, language: tone(max(200, 20 * len(text)))
    )
    settings.REALTIME_API_URL = realtime_emulator.url
    for action, params in (("enable", {}), ("set_rollout_percentage", {"percent": 100})):
        await database_sync_to_async(apply_action)(action, actor="test", reason="idle on Realtime", **params)
    ws = await connect(kiosk_and_key[1])
    opening = await start(ws, voice=True)
    assert last(opening, "session.started")["mode"] == "realtime"
    session_id = last(opening, "session.started")["session_id"]
    assert "山田" in last(await say(ws, NAME), "visit.updated")["visitor_name"]

    await expect_idle_end(ws)
    assert await visit_status(session_id) == Visit.Status.ABANDONED


@pytest.mark.asyncio
async def test_a_fresh_session_nobody_spoke_to_stays_open(kiosk_and_key, clock):
    ws = await connect(kiosk_and_key[1])
    await start(ws)
    clock.now += 60
    assert await ws.receive_nothing(timeout=QUIET)
    await ws.disconnect()


@pytest.mark.asyncio
async def test_a_resumed_session_is_watched_from_its_start(kiosk_and_key, clock):
    ws = await connect(kiosk_and_key[1])
    await start(ws, session_id="walked-away")
    await say(ws, NAME)
    await ws.disconnect()

    ws = await connect(kiosk_and_key[1])
    await start(ws, session_id="walked-away")  # a reload: the name is on screen again
    clock.now += 0.4
    await expect_idle_end(ws)
    assert await visit_status("walked-away") == Visit.Status.ABANDONED


@pytest.mark.asyncio
async def test_visitor_activity_restarts_the_clock(kiosk_and_key, clock):
    ws = await connect(kiosk_and_key[1])
    await start(ws)
    await say(ws, NAME)  # idle from 1000.3 unless the visitor goes on
    clock.now += 0.2
    await say(ws, "鈴木さんに会いに来ました。")  # idle from 1000.5 now
    clock.now += 0.2
    assert await ws.receive_nothing(timeout=QUIET)
    clock.now += 0.2
    await expect_idle_end(ws)


@pytest.mark.asyncio
async def test_a_session_is_not_ended_while_the_reply_plays(kiosk_and_key, clock, monkeypatch):
    async def two_seconds_of_speech(self, text: str) -> None:
        for _ in range(20):
            await self.output.send_audio(bytes(4800))  # 0.1 s of PCM16 at 24 kHz

    monkeypatch.setattr(LegacyAudioService, "_play", two_seconds_of_speech)
    ws = await connect(kiosk_and_key[1])
    await start(ws, voice=True)
    clock.now += 3  # the greeting has played
    await say(ws, NAME)  # sent at once, plays until 1005
    clock.now += 1
    assert await ws.receive_nothing(timeout=QUIET)
    clock.now += 1.4
    await expect_idle_end(ws)


@pytest.mark.asyncio
async def test_a_session_is_not_ended_while_a_turn_is_in_progress(kiosk_and_key, clock, monkeypatch):
    gate = threading.Event()
    answer = workflow.handle_text

    def slow_answer(session_id: str, text: str):
        gate.wait(timeout=30)
        return answer(session_id, text)

    monkeypatch.setattr(workflow, "handle_text", slow_answer)
    ws = await connect(kiosk_and_key[1])
    try:
        await start(ws)
        await ws.send_json_to({"type": "input_text", "text": NAME})
        await collect_until(ws, lambda message, _: message["type"] == "transcript", wait=10)
        clock.now += 5
        assert await ws.receive_nothing(timeout=QUIET)
    finally:
        gate.set()
    await collect_turn(ws, wait=10)
    clock.now += 0.4
    await expect_idle_end(ws)


def make_visit(session_id: str, minutes_ago: float, **fields) -> Visit:
    visit = Visit.objects.create(session_id=session_id, **fields)
    Visit.objects.filter(pk=visit.pk).update(updated_at=timezone.now() - timedelta(minutes=minutes_ago))
    return visit


def test_clean_up_closes_what_a_crashed_server_left_open(settings, capsys):
    settings.KIOSK_IDLE_TIMEOUT_SECONDS = 60
    make_visit("crashed", 10, visitor_name="山田")
    make_visit("crashed-confirming", 10, company_name="テスト", status=Visit.Status.CONFIRMING)
    make_visit("delivery", 10, visitor_type=Visit.VisitorType.DELIVERY)
    make_visit("still-talking", 0.5, visitor_name="佐藤")
    make_visit("waiting-kiosk", 10)  # nothing collected: maybe a kiosk waiting for its visitor
    make_visit("done", 10, visitor_name="鈴木", status=Visit.Status.HOST_NOTIFIED)

    call_command("close_abandoned_visits")

    assert "Closed 3 abandoned visit(s)" in capsys.readouterr().out
    statuses = dict(Visit.objects.values_list("session_id", "status"))
    assert statuses == {
        "crashed": Visit.Status.ABANDONED,
        "crashed-confirming": Visit.Status.ABANDONED,
        "delivery": Visit.Status.ABANDONED,
        "still-talking": Visit.Status.COLLECTING,
        "waiting-kiosk": Visit.Status.COLLECTING,
        "done": Visit.Status.HOST_NOTIFIED,
    }
    call_command("close_abandoned_visits", "--older-than-seconds", "10")
    assert Visit.objects.get(session_id="still-talking").status == Visit.Status.ABANDONED


async def nothing_to_do() -> None:
    """The watchdog's callback, for tests that only ask `is_idle()`."""


def test_speech_without_a_reply_restarts_the_clock_and_a_failed_turn_does_not_hold_it(clock):
    watchdog = IdleWatchdog(0.3, nothing_to_do)
    watchdog.visitor_active(turn=True)  # e.g. a push-to-talk commit
    clock.now += 5
    assert not watchdog.is_idle()  # a reply is owed
    watchdog.saw_message({"type": "error", "code": "input_audio_empty"})
    assert watchdog.is_idle()
    watchdog.saw_message({"type": "transcript", "role": "visitor", "text": "あの", "final": False})
    clock.now += 0.2
    assert not watchdog.is_idle()
    clock.now += 0.2
    assert watchdog.is_idle()


@pytest.mark.parametrize("loop_turns", range(4))
async def test_a_watchdog_stopped_as_activity_wakes_it_stops(loop_turns):
    """The session ends right after a frame woke the watchdog: its task ends, and the session's end is not held."""
    watchdog = IdleWatchdog(60, nothing_to_do, armed=True)
    watchdog.start()
    await asyncio.sleep(0)  # it waits for activity
    watchdog.visitor_active()
    for _ in range(loop_turns):
        await asyncio.sleep(0)
    await asyncio.wait_for(watchdog.stop(), 2)
