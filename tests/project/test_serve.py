"""`make serve`'s supervisor for real: two uvicorn workers over PostgreSQL and Redis behind nginx with TLS.

A kiosk talks through nginx over TLS, /health answers through nginx, an emergency stop made through one
worker reaches a kiosk held by the other, and the task consumer runs beside them (started again when killed).
Every process the test started is gone at the end, pass or fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.support.live_server import free_port, wait_for_port
from tests.support.realtime import realtime_everywhere
from tests.support.serve_fleet import (
    children_running,
    start_serve,
    stop_everything,
    tls_without_verification,
    worker_ports,
)
from tests.support.waiting import wait_until


async def send(ws, message: dict, until: tuple[str, ...]) -> list[dict]:
    """Send one message and read the replies (audio skipped) up to one of the `until` types."""
    await ws.send(json.dumps(message, ensure_ascii=False))
    replies = []
    while True:
        frame = await ws.recv()
        if isinstance(frame, bytes):
            continue
        replies.append(json.loads(frame))
        if replies[-1]["type"] in until:
            return replies


async def mode_changed(ws) -> dict:
    while True:
        frame = await ws.recv()
        if isinstance(frame, str) and (message := json.loads(frame))["type"] == "mode.changed":
            return message


def post_emergency_stop(port: int, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/realtime/emergency-stop",
        data=json.dumps({"reason": "fire drill"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Forwarded-Proto": "https"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def health_through_nginx(port: int) -> dict:
    url = f"https://127.0.0.1:{port}/health"
    with urllib.request.urlopen(url, context=tls_without_verification(), timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_workers_behind_nginx(tmp_path):
    async with realtime_everywhere(tmp_path, "redis://127.0.0.1:6379/12") as setup:
        token = setup.manage("create_api_token", "admin").strip().splitlines()[-1]
        port, run_dir = free_port(), tmp_path / "serve"
        serve = start_serve(setup.env, 2, port, run_dir, tmp_path / "serve.log")
        try:
            await drive(serve, port, run_dir, setup.key, token, tmp_path)
        finally:
            stop_everything(serve)
        assert serve.returncode == 0, (tmp_path / "serve.log").read_text()
        for leftover in [port, *worker_ports(run_dir)]:
            with pytest.raises(AssertionError, match="something listening"):
                wait_for_port(leftover, timeout=0.3)  # nobody listens any more


async def drive(serve: subprocess.Popen, port: int, run_dir, key: str, token: str, tmp_path) -> None:
    log = tmp_path / "serve.log"
    await asyncio.to_thread(wait_for_port, port, 240, serve, log)  # nginx starts once both workers are ready
    first, second = worker_ports(run_dir)
    context = tls_without_verification()

    assert (await asyncio.to_thread(health_through_nginx, port))["ready"] is True

    auth = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(f"wss://127.0.0.1:{port}/ws/kiosk/", ssl=context, additional_headers=auth) as ws:
        started = await send(ws, {"type": "session.start", "session_id": "serve-tls"}, ("session.started",))
        assert started[-1]["mode"] == "realtime", started
        turn = await send(
            ws, {"type": "input_text", "text": "株式会社テストの山田太郎です。"}, ("response.done", "error")
        )
        assert turn[-1]["type"] == "response.done", turn
        assert any(m["type"] == "transcript" and m.get("role") == "assistant" for m in turn), turn

    async with websockets.connect(f"ws://127.0.0.1:{second}/ws/kiosk/", additional_headers=auth) as ws:
        started = await send(ws, {"type": "session.start", "session_id": "serve-other"}, ("session.started",))
        assert started[-1]["mode"] == "realtime", started
        assert await asyncio.to_thread(post_emergency_stop, first, token) == 200  # through the other worker
        switched = await asyncio.wait_for(mode_changed(ws), timeout=10)
        assert switched == {"type": "mode.changed", "mode": "legacy", "reason": "emergency_stop"}

    await asyncio.to_thread(rolling_restart_keeps_serving, serve, port, log)
    await asyncio.to_thread(task_consumer_is_supervised, serve, run_dir)


def task_consumer_is_supervised(serve: subprocess.Popen, run_dir: Path) -> None:
    """One task consumer runs beside the workers; killed, it is started again."""
    consumer_log = run_dir / "task-consumer.log"
    wait_until(lambda: "Huey consumer started" in consumer_log.read_text(), within=30, what="the consumer starts")
    [consumer] = children_running(serve, b"run_huey")
    os.kill(consumer, signal.SIGKILL)
    restarted = wait_until(lambda: [p for p in children_running(serve, b"run_huey") if p != consumer], within=30)
    assert len(restarted) == 1
    wait_until(lambda: consumer_log.read_text().count("Huey consumer started") >= 2, within=30)


def rolling_restart_keeps_serving(serve: subprocess.Popen, port: int, log: Path) -> None:
    """SIGHUP restarts the workers one at a time; /health answers 200 through nginx all along."""
    serve.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 240
    answers = 0
    while "every worker restarted" not in log.read_text():
        assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
        assert health_through_nginx(port)["ready"] is True
        answers += 1
        time.sleep(0.5)
    assert answers >= 4, answers  # the restart took a while, and /health never failed meanwhile
