"""Benchmark: failover, routing decision and emergency-stop propagation, on a real server.

A server process and the Realtime emulator (its own process, the server's database, local speech)
run on 127.0.0.1 over a fresh database with Realtime on for every session. Figures:

- failover: a Realtime session's upstream drops (close 1006, set through the emulator's fire-drill
  endpoint) just as the visitor speaks → the Legacy answer to that utterance reaches the kiosk;
  baseline in the same run: the same turn answered by a session that is on Legacy from the start;
- decision: `decide_for_session` per session, in this process, on the server's database;
- stop: `manage.py emergency_stop` committed (its audit row) → `mode.changed` at live sessions.

    python benchmarks/failover.py [--trials 20] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers

from tests.support.live_server import CONNECTION_LIMITS_LIFTED, LiveServer, free_port, throwaway_database, wait_for_port

NAME, HOST = "株式会社テストの山田太郎です。", "鈴木さんと10時にお約束があります。"
DRILL_KEY = "sk-drill"  # the emulator started without --accept-key takes any key


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def drill(port: int, **knobs: str) -> None:
    """Change the emulator's fault knobs, as staff do in a fire drill."""
    query = "&".join(f"{name}={value}" for name, value in knobs.items())
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/realtime/_faults?{query}", headers={"Authorization": f"Bearer {DRILL_KEY}"}
    )
    urllib.request.urlopen(request, timeout=5).read()


async def until(ws, predicate) -> dict:
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=30)
        if isinstance(message, str) and predicate(message := json.loads(message)):
            return message


def done(message: dict) -> bool:
    return message["type"] == "response.done"


async def session(server: LiveServer, key: str, session_id: str):
    ws = await websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {key}"})
    await ws.send(json.dumps({"type": "session.start", "session_id": session_id}))
    started = await until(ws, lambda m: m["type"] == "session.started")
    await until(ws, done)
    return ws, started["mode"]


async def failover_trial(server: LiveServer, key: str, emulator_port: int, number: int) -> float:
    ws, mode = await session(server, key, f"failover-{number}")
    assert mode == "realtime", mode
    await ws.send(json.dumps({"type": "input_text", "text": NAME}, ensure_ascii=False))
    await until(ws, done)
    drill(emulator_port, close_code="1006", close_after_events="0")
    started = time.perf_counter()
    await ws.send(json.dumps({"type": "input_text", "text": HOST}, ensure_ascii=False))
    await until(ws, lambda m: m["type"] == "mode.changed")
    await until(ws, done)
    elapsed = time.perf_counter() - started
    drill(emulator_port, close_code="none")
    await ws.close()
    # Five drops in a row rightly open the connection guard; this measures failover, not the guard.
    await asyncio.to_thread(reset_guards, "connection")
    return elapsed


def reset_guards(*names: str) -> None:
    from fallback.emergency import apply_action

    for name in names:
        apply_action("reset_guard", actor="cli:benchmark", reason="failover benchmark", guard=name)


async def legacy_trial(server: LiveServer, key: str, number: int) -> float:
    ws, mode = await session(server, key, f"legacy-{number}")
    assert mode == "legacy", mode
    await ws.send(json.dumps({"type": "input_text", "text": NAME}, ensure_ascii=False))
    await until(ws, done)
    started = time.perf_counter()
    await ws.send(json.dumps({"type": "input_text", "text": HOST}, ensure_ascii=False))
    await until(ws, done)
    elapsed = time.perf_counter() - started
    await ws.close()
    return elapsed


async def stop_trial(server: LiveServer, sessions: int = 5) -> float:
    """Seconds from the stop's audit row to the last live session's `mode.changed`, the sessions on kiosks of
    their own (a kiosk's new socket replaces its old one)."""
    from fallback.models import AuditEntry

    # The failed-over sessions before this rightly tripped the error-rate guard.
    await asyncio.to_thread(reset_guards, "connection", "error_rate", "latency")
    kiosks = []
    for number in range(sessions):
        ws, mode = await session(server, await asyncio.to_thread(server.create_kiosk), f"stop-{number}")
        assert mode == "realtime", mode
        kiosks.append(ws)
    await asyncio.to_thread(server.manage, "emergency_stop", "--reason", "benchmark")
    await asyncio.gather(*(until(ws, lambda m: m["type"] == "mode.changed") for ws in kiosks))
    received = time.time()
    stopped = await AuditEntry.objects.filter(action="emergency_stop").alatest("created_at")
    for ws in kiosks:
        await ws.close()
    return received - stopped.created_at.timestamp()


def decision_times(count: int) -> list[float]:
    from fallback.services import decide_for_session

    times = []
    for number in range(count):
        started = time.perf_counter()
        decide_for_session(f"decision-{number}")
        times.append(time.perf_counter() - started)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, throwaway_database(args.database, Path(directory)) as url:
        emulator_port = free_port()
        env = {
            "REALTIME_API_URL": f"ws://127.0.0.1:{emulator_port}/v1/realtime",
            "SPEECH_WARM_UP": "false",
            **CONNECTION_LIMITS_LIFTED,  # a session per trial, from one kiosk
        }
        server = LiveServer(url, Path(directory), env)
        key = server.prepare()
        os.environ.update({"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "reception_project.settings"})
        import django

        django.setup()
        emulator = server.spawn("realtime_emulator", "--port", str(emulator_port), "--brain", "reception")
        server.start()
        try:
            wait_for_port(emulator_port)
            legacy = [await legacy_trial(server, key, n) for n in range(args.trials)]
            server.manage("rollout", "--enable", "--percent", "100", "--reason", "benchmark")
            await failover_trial(server, key, emulator_port, -1)  # warm-up, not counted
            failover = [await failover_trial(server, key, emulator_port, n) for n in range(args.trials)]

            decisions = await asyncio.to_thread(decision_times, 300)
            stop = await stop_trial(server)
        finally:
            server.stop()
            emulator.terminate()
            emulator.wait(timeout=10)
    ms = 1000
    f50, f95, l50, l95 = (
        percentile(failover, 0.5),
        percentile(failover, 0.95),
        percentile(legacy, 0.5),
        percentile(legacy, 0.95),
    )
    print(f"database={args.database} trials={args.trials}")
    print(f"failover (upstream drop → Legacy answer at the kiosk): p50={f50 * ms:.0f} ms p95={f95 * ms:.0f} ms")
    print(f"baseline (the same turn on Legacy from the start):     p50={l50 * ms:.0f} ms p95={l95 * ms:.0f} ms")
    print(f"ratio p50={f50 / l50:.2f}x p95={f95 / l95:.2f}x")
    d50, d95 = percentile(decisions, 0.5), percentile(decisions, 0.95)
    print(f"decision per session: p50={d50 * ms:.2f} ms p95={d95 * ms:.2f} ms")
    print(f"emergency stop committed → mode.changed at 5 live sessions: {stop * ms:.0f} ms (last arrival)")


if __name__ == "__main__":
    asyncio.run(main())
