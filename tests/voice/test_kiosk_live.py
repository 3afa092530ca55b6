"""A whole conversation against a real server process with a plain `websockets` client,
killed in the middle and restarted: the conversation continues where it was.
Run on SQLite (the embedded default) and on PostgreSQL.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
import websockets

from tests.support.live_server import LiveServer, throwaway_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis])])
def kiosk_server(request, tmp_path):
    """The embedded default (SQLite, in-process layer) and the multi-process set-up (PostgreSQL, Redis)."""
    extra_env = {"REDIS_URL": "redis://127.0.0.1:6379/15"} if request.param == "postgres" else {}
    with throwaway_database(request.param, tmp_path) as database_url:
        server = LiveServer(database_url, tmp_path, extra_env)
        server.key = server.prepare()
        server.start()
        yield server
        server.stop()


async def next_turn(ws) -> list[dict]:
    messages = []
    while True:
        message = json.loads(await ws.recv(decode=True))
        messages.append(message)
        if message["type"] in ("response.done", "error", "session.ended"):
            return messages


def last(messages: list[dict], kind: str) -> dict:
    return [message for message in messages if message["type"] == kind][-1]


async def connect(server: LiveServer):
    return await websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {server.key}"})


async def send(ws, message: dict) -> list[dict]:
    await ws.send(json.dumps(message, ensure_ascii=False))
    return await next_turn(ws)


async def test_conversation_survives_a_process_kill(kiosk_server):
    ws = await connect(kiosk_server)
    opening = await send(ws, {"type": "session.start", "session_id": "live-restart-1", "language": "ja"})
    assert opening[0]["type"] == "session.started" and opening[0]["mode"] == "legacy"
    turn = await send(ws, {"type": "input_text", "text": "株式会社テストの山田太郎です。"})
    pending_question = last(turn, "transcript")["text"]
    assert last(turn, "visit.updated")["visitor_name"].replace(" ", "") == "山田太郎"

    kiosk_server.kill()
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    kiosk_server.start()

    ws = await connect(kiosk_server)
    resumed = await send(ws, {"type": "session.start", "session_id": "live-restart-1", "language": "ja"})
    assert last(resumed, "transcript")["text"] == pending_question
    assert "テスト" in last(resumed, "visit.updated")["company_name"]

    turn = await send(ws, {"type": "input_text", "text": "鈴木さんと10時にお約束があります。"})
    assert last(turn, "visit.updated")["status"] == "confirming"
    turn = await send(ws, {"type": "input_text", "text": "はい"})
    assert last(turn, "visit.updated")["status"] == "host_notified"
    ended = await send(ws, {"type": "session.end"})
    visit_id = last(ended, "session.ended")["visit_id"]
    await ws.close()

    exported = {row["session_id"]: row for row in json.loads(kiosk_server.manage("export_visits", "--format", "json"))}
    row = exported["live-restart-1"]
    assert row["visitor_name"].replace(" ", "") == "山田太郎"
    assert row["appointment_found"] is True and row["host_notified"] is True
    assert visit_id is not None


def test_the_servers_log_keeps_no_request_line(tmp_path):
    """A request line can carry a kiosk pairing token: the server logs no access lines (LOG_LEVEL INFO)."""
    with throwaway_database("sqlite", tmp_path) as database_url:
        server = LiveServer(database_url, tmp_path, {"LOG_LEVEL": "INFO"})
        server.prepare()
        server.start()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health/live?pairing=s3cr3t-token") as reply:
                assert reply.status == 200
        finally:
            server.stop()
    log = server.log.read_text()
    assert "Started server process" in log  # the server's own lines are kept
    assert "s3cr3t-token" not in log and "/health/live" not in log
