"""The kiosk socket through Channels' WebsocketCommunicator: the text path and bad input."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from metrics.collector import collector
from metrics.models import SessionMetric
from reception.models import Kiosk, KioskPairing, Visit
from reception_project.asgi import application

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("isolated_workflow_state"),
]


def communicator(key: str | None = None, origin: str | None = None, cookie: str | None = None):
    headers = []
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/kiosk/", headers=headers)


async def receive_turn(ws) -> list[dict]:
    """Everything up to and including the next response.done."""
    messages = []
    while True:
        message = await ws.receive_json_from(timeout=10)
        messages.append(message)
        if message["type"] in ("response.done", "error"):
            return messages


def of_type(messages: list[dict], kind: str) -> dict:
    return next(message for message in messages if message["type"] == kind)


async def start(ws, **fields) -> list[dict]:
    await ws.send_json_to({"type": "session.start", **fields})
    started = await ws.receive_json_from(timeout=10)
    assert started["type"] == "session.started", started
    return [started, *await receive_turn(ws)]


async def say(ws, text: str) -> list[dict]:
    await ws.send_json_to({"type": "input_text", "text": text})
    return await receive_turn(ws)


async def test_japanese_conversation_reaches_the_host_and_records_the_visit(demo_directory, kiosk_and_key):
    kiosk, key = kiosk_and_key
    ws = communicator(key)
    connected, _ = await ws.connect()
    assert connected
    opening = await start(ws, session_id="ja-visit-1", language="ja")
    assert opening[0] == {
        "type": "session.started",
        "session_id": "ja-visit-1",
        "mode": "legacy",
        "reason": "disabled",
    }
    assert of_type(opening, "transcript")["role"] == "assistant"
    assert of_type(opening, "visit.updated")["status"] == "collecting"

    turn = await say(ws, "株式会社テストの山田太郎です。鈴木さんと10時にお約束があります。")
    assert turn[0] == {
        "type": "transcript",
        "role": "visitor",
        "text": "株式会社テストの山田太郎です。鈴木さんと10時にお約束があります。",
        "final": True,
    }
    visit = of_type(turn, "visit.updated")
    assert visit["visitor_name"].replace(" ", "") == "山田太郎"
    assert "テスト" in visit["company_name"]
    assert "鈴木" in visit["host_name"]

    turn = await say(ws, "はい")
    visit = of_type(turn, "visit.updated")
    assert visit["status"] == "host_notified"
    assert visit["visitor_type"] == "appointment"
    assert "会議室A" in [m for m in turn if m["type"] == "transcript"][-1]["text"]

    await ws.send_json_to({"type": "session.end"})
    ended = await ws.receive_json_from(timeout=10)
    assert ended["type"] == "session.ended" and ended["reason"] == "client_ended"
    record = await Visit.objects.aget(pk=ended["visit_id"])
    assert record.session_id == "ja-visit-1" and record.kiosk_id == kiosk.pk
    assert record.appointment_found and record.host_notified
    await ws.disconnect()


async def test_english_conversation_by_text(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    opening = await start(ws, language="en")
    assert opening[0]["session_id"]  # the server made one
    turn = await say(ws, "Hi, I'm John Smith from Acme Corp, here to see Mr. Tanaka about the contract.")
    visit = of_type(turn, "visit.updated")
    assert visit["visitor_name"] == "John Smith" and visit["company_name"] == "Acme Corp"
    turn = await say(ws, "Yes")
    assert of_type(turn, "visit.updated")["status"] == "host_notified"
    await ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"no_type": 1}', "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        (json.dumps({"type": "input_text", "text": "あ" * 1001}), "text_too_long"),
        (json.dumps({"type": "input_text", "text": "   "}), "invalid_text"),
        (json.dumps({"type": "input_text", "text": 42}), "invalid_text"),
        (json.dumps({"type": "input_audio.append", "audio": ""}), "invalid_audio"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(demo_directory, kiosk_and_key, frame, code):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    await start(ws, language="en")
    await ws.send_to(text_data=frame)
    error = await ws.receive_json_from(timeout=10)
    assert error["type"] == "error" and error["code"] == code and error["message"]
    # Still open and still the same conversation.
    turn = await say(ws, "My name is Jane Doe")
    assert of_type(turn, "visit.updated")["visitor_name"] == "Jane Doe"
    await ws.disconnect()


async def test_oversized_frame_is_refused(demo_directory, kiosk_and_key, settings):
    settings.KIOSK_MAX_FRAME_BYTES = 2048
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    await start(ws)
    await ws.send_to(text_data=json.dumps({"type": "input_text", "text": "x" * 900, "padding": "y" * 2000}))
    assert (await ws.receive_json_from(timeout=10))["code"] == "frame_too_large"
    await ws.send_to(bytes_data=b"\x00" * 4096)
    assert (await ws.receive_json_from(timeout=10))["code"] == "frame_too_large"
    await ws.disconnect()


async def test_messages_before_session_start_are_refused(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    for frame in ({"type": "input_text", "text": "hello"}, {"type": "session.end"}, {"type": "input_audio.commit"}):
        await ws.send_json_to(frame)
        assert (await ws.receive_json_from(timeout=10))["code"] == "session_not_started"
    await ws.send_to(bytes_data=b"\x00\x00" * 240)
    assert (await ws.receive_json_from(timeout=10))["code"] == "session_not_started"
    await start(ws)  # and the socket still works
    await ws.send_json_to({"type": "session.start"})
    assert (await ws.receive_json_from(timeout=10))["code"] == "session_already_started"
    await ws.disconnect()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"session_id": "bad id!"}, "invalid_session_id"),
        ({"session_id": "x" * 65}, "invalid_session_id"),
        ({"language": "fr"}, "invalid_language"),
    ],
)
async def test_session_start_is_validated(kiosk_and_key, fields, code):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    await ws.send_json_to({"type": "session.start", **fields})
    assert (await ws.receive_json_from(timeout=10))["code"] == code
    await ws.disconnect()


@pytest.mark.parametrize("key", [None, "not-a-real-key"])
async def test_missing_or_wrong_key_is_refused(kiosk_and_key, key):
    ws = communicator(key)
    connected, _ = await ws.connect()
    assert connected  # accepted only to say why
    error = await ws.receive_json_from(timeout=10)
    assert error["code"] == "unauthorized"
    assert (await ws.receive_output(timeout=10))["code"] == 4401


async def test_inactive_kiosk_is_refused(kiosk_and_key):
    kiosk, key = kiosk_and_key
    kiosk.is_active = False
    await kiosk.asave()
    ws = communicator(key)
    await ws.connect()
    assert (await ws.receive_json_from(timeout=10))["code"] == "unauthorized"


async def test_foreign_origin_is_refused_at_the_handshake(kiosk_and_key):
    _, key = kiosk_and_key
    ws = communicator(key, origin="https://evil.example.com")
    connected, code = await ws.connect()
    assert not connected and code == 4403


async def test_paired_browser_cookie_from_our_origin_is_let_in(demo_directory, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    _, link_token = await database_sync_to_async(KioskPairing.create_link)(kiosk)
    device_token = await database_sync_to_async(KioskPairing.redeem)(link_token)
    ws = communicator(origin="http://127.0.0.1:8000", cookie=f"kiosk_device={device_token}")
    connected, _ = await ws.connect()
    assert connected
    opening = await start(ws, language="ja")
    assert of_type(opening, "transcript")["text"]
    await ws.disconnect()


async def test_a_session_cannot_be_taken_over_by_another_kiosk(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    await start(ws, session_id="owned-session")
    await ws.disconnect()
    other = Kiosk(name="Other kiosk")
    other_key = other.set_new_key()
    await other.asave()
    intruder = communicator(other_key)
    await intruder.connect()
    await intruder.send_json_to({"type": "session.start", "session_id": "owned-session"})
    assert (await intruder.receive_json_from(timeout=10))["code"] == "session_forbidden"
    await intruder.disconnect()


async def test_reconnecting_with_the_same_session_continues_without_asking_again(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    greeting = of_type(await start(ws, session_id="reconnect-1", language="ja"), "transcript")["text"]
    turn = await say(ws, "株式会社テストの山田太郎です")
    question = [m for m in turn if m["type"] == "transcript"][-1]["text"]
    await ws.disconnect()

    ws = communicator(key)
    await ws.connect()
    resumed = await start(ws, session_id="reconnect-1", language="ja")
    assert of_type(resumed, "transcript")["text"] != greeting
    assert of_type(resumed, "transcript")["text"] == question
    visit = of_type(resumed, "visit.updated")
    assert visit["visitor_name"].replace(" ", "") == "山田太郎" and "テスト" in visit["company_name"]
    await ws.disconnect()


async def end_and_read_metrics(ws, session_id: str) -> SessionMetric:
    await ws.send_json_to({"type": "session.end"})
    assert (await ws.receive_json_from(timeout=10))["type"] == "session.ended"
    await ws.disconnect()
    assert await database_sync_to_async(collector.flush)()
    return await SessionMetric.objects.aget(session_id=session_id)


async def test_a_visit_is_measured_and_rated_on_its_session(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    await start(ws, session_id="quality-1", language="ja")
    await say(ws, "えーと")  # nothing the workflow can use: it asks again
    await say(ws, "株式会社テストの山田太郎です。鈴木さんと10時にお約束があります。")
    await say(ws, "いいえ")  # a correction at the confirmation
    assert of_type(await say(ws, "山田次郎です"), "visit.updated")["visitor_name"].replace(" ", "") == "山田次郎"
    assert of_type(await say(ws, "はい"), "visit.updated")["status"] == "host_notified"
    await ws.send_json_to({"type": "feedback", "session_id": "quality-1", "rating": 3})
    session = await end_and_read_metrics(ws, "quality-1")
    assert session.outcome == "completed"
    assert (session.visitor_turns, session.reasks, session.corrections) == (5, 1, 1)
    assert session.seconds_to_complete is not None and session.seconds_to_complete >= 0
    assert session.satisfaction == 3


async def test_a_session_ended_before_its_visit_finished_is_abandoned(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    await start(ws, session_id="quality-2", language="ja")
    await say(ws, "株式会社テストの山田太郎です")
    session = await end_and_read_metrics(ws, "quality-2")
    assert session.outcome == "abandoned"
    assert (session.visitor_turns, session.seconds_to_complete, session.satisfaction) == (1, None, None)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"session_id": "someone-else", "rating": 3}, "session_forbidden"),
        ({"session_id": "quality-3", "rating": 4}, "invalid_rating"),
        ({"session_id": "quality-3", "rating": 2.5}, "invalid_rating"),
        ({"session_id": "quality-3", "rating": True}, "invalid_rating"),
        ({"session_id": "quality-3", "rating": "3"}, "invalid_rating"),
        ({"rating": 3}, "invalid_session_id"),
    ],
)
async def test_feedback_is_one_rating_of_this_connections_session(demo_directory, kiosk_and_key, fields, code):
    _, key = kiosk_and_key
    ws = communicator(key)
    await ws.connect()
    await ws.send_json_to({"type": "feedback", "session_id": "quality-3", "rating": 3})
    assert (await ws.receive_json_from(timeout=10))["code"] == "session_not_started"
    await start(ws, session_id="quality-3", language="ja")
    await ws.send_json_to({"type": "feedback", **fields})
    assert (await ws.receive_json_from(timeout=10))["code"] == code
    session = await end_and_read_metrics(ws, "quality-3")
    assert session.satisfaction is None
