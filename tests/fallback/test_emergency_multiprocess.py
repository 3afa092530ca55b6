"""An emergency stop reaches live Realtime sessions in every server process.

Two server processes share PostgreSQL and Redis, each with a live kiosk session on Realtime; a
third process (`manage.py emergency_stop`) issues the stop. The delay from the stop's audit row to
each kiosk's `mode.changed` is printed.
"""

from __future__ import annotations

import asyncio
import json
import time

import psycopg
import pytest
import websockets

from tests.support.live_server import LiveServer, throwaway_database
from tests.support.realtime import reception_emulator


@pytest.mark.postgres
@pytest.mark.redis
async def test_emergency_stop_reaches_live_sessions_in_every_process(tmp_path):
    """Two server processes share PostgreSQL and Redis; a third process issues the stop."""
    upstream = reception_emulator()
    await upstream.start()
    try:
        with throwaway_database("postgres", tmp_path) as database_url:
            env = {"REDIS_URL": "redis://127.0.0.1:6379/14", "REALTIME_API_URL": upstream.url}
            servers = [LiveServer(database_url, tmp_path, env) for _ in range(2)]
            key = servers[0].prepare()
            servers[0].manage("rollout", "--enable", "--percent", "100", "--reason", "drill")
            for server in servers:
                server.start()
            try:
                kiosks = []
                for number, server in enumerate(servers):
                    ws = await websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {key}"})
                    await ws.send(json.dumps({"type": "session.start", "session_id": f"drill-{number}"}))
                    started = json.loads(await ws.recv())
                    assert started["mode"] == "realtime", started
                    kiosks.append(ws)
                async with asyncio.timeout(30):  # both sessions are live on Realtime: each greeted the visitor
                    await asyncio.gather(*(_next_message(ws, "response.done") for ws in kiosks))

                async def switched(ws) -> float:
                    message = await _next_message(ws, "mode.changed")
                    assert message == {"type": "mode.changed", "mode": "legacy", "reason": "emergency_stop"}
                    return time.time()

                # The kiosks listen while the command runs: its message arrives before the command's process exits.
                listening = asyncio.gather(*(switched(ws) for ws in kiosks))
                await asyncio.to_thread(servers[0].manage, "emergency_stop", "--reason", "fire drill")
                stopped_at = _audit_time(database_url, "emergency_stop")
                arrivals = await asyncio.wait_for(listening, timeout=10)
                delays = [arrival - stopped_at for arrival in arrivals]
                print(
                    f"emergency stop reached the live sessions after {', '.join(f'{d * 1000:.0f} ms' for d in delays)}"
                )
                for ws in kiosks:
                    await ws.close()
            finally:
                for server in servers:
                    server.stop()
                print(servers[0].log.read_text()[-4000:])  # both workers' log, shown when the test fails
    finally:
        await upstream.stop()


async def _next_message(ws: websockets.ClientConnection, kind: str) -> dict:
    """The next JSON message of type `kind` on the kiosk socket (audio frames and other messages skipped)."""
    while True:
        frame = await ws.recv()
        if isinstance(frame, str) and (message := json.loads(frame))["type"] == kind:
            return message


def _audit_time(database_url: str, action: str) -> float:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT extract(epoch FROM created_at) FROM fallback_auditentry WHERE action = %s ORDER BY id DESC LIMIT 1",
            (action,),
        ).fetchone()
    return float(row[0])
