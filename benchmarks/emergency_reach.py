"""Benchmark: an emergency stop reaching the live sessions of every worker, with many kiosks on each.

`make serve`'s layout (`--workers` uvicorn workers behind nginx over PostgreSQL and Redis, the upstream stand-in
in its own process), `--sessions` kiosks live on Realtime, spread evenly over the workers (each kiosk connects
to its worker's own port, so every worker's sessions are known). Each trial issues the stop one way, by turns
`manage.py emergency_stop` (its own process) and `POST /api/v1/realtime/emergency-stop` through nginx, and times
every kiosk's `mode.changed` from the stop's audit row (same clock); then `resume_realtime`, and the next trial
opens new sessions. The admin's button calls the same service function as both (`fallback.emergency`).
Prints p50/p95/max per worker and over all, and how many sessions were reached.

    python benchmarks/emergency_reach.py [--workers 2] [--sessions 50] [--trials 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers

from tests.load_test_realtime import create_kiosks
from tests.support.live_server import (
    CONNECTION_LIMITS_LIFTED,
    REPO,
    LiveServer,
    free_port,
    throwaway_database,
    wait_for_port,
)
from tests.support.load_upstream import percentiles
from tests.support.serve_fleet import serving, tls_without_verification, worker_ports

REDIS_URL = "redis://127.0.0.1:6379/12"
CHANNELS = ("command", "api")


async def open_session(url: str, key: str, session_id: str) -> websockets.ClientConnection:
    """A kiosk socket with a live Realtime session (its greeting answered)."""
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None)
    await ws.send(json.dumps({"type": "session.start", "session_id": session_id}))
    started = await next_message(ws, "session.started")
    if started["mode"] != "realtime":
        raise RuntimeError(f"session {session_id} started on {started['mode']}: {started}")
    await next_message(ws, "response.done")
    return ws


async def next_message(ws: websockets.ClientConnection, kind: str) -> dict:
    """The next JSON message of type `kind` (audio and other messages skipped); stamped with its arrival."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), timeout=30)
        if isinstance(frame, str) and (message := json.loads(frame))["type"] == kind:
            return {**message, "arrived": time.time()}


def stop_by_api(nginx_port: int, token: str) -> None:
    request = urllib.request.Request(
        f"https://127.0.0.1:{nginx_port}/api/v1/realtime/emergency-stop",
        data=json.dumps({"reason": "benchmark"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    context = tls_without_verification()
    with urllib.request.urlopen(request, timeout=10, context=context) as response:  # nosec B310  # https://127.0.0.1 (nginx)
        response.read()


def stopped_at(database_url: str) -> float:
    """When the latest emergency stop was committed: its audit row's time."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT created_at FROM fallback_auditentry WHERE action = 'emergency_stop'"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    return row[0].timestamp()


async def trial(
    server: LiveServer, urls: list[str], keys: list[str], channel: str, stop: Callable[[], object], number: int
) -> dict:
    """One stop, issued by `stop()`: every kiosk's delay (ms) from the audit row to its `mode.changed`, by worker."""
    workers = [n % len(urls) for n in range(len(keys))]  # kiosk n on worker n mod N
    opening = [open_session(urls[workers[n]], key, f"stop-{number}-{n}") for n, key in enumerate(keys)]
    kiosks = list(zip(workers, await asyncio.gather(*opening), strict=True))
    try:
        listening = [asyncio.ensure_future(next_message(ws, "mode.changed")) for _, ws in kiosks]
        await asyncio.to_thread(stop)
        arrivals = await asyncio.gather(*listening, return_exceptions=True)
        committed = await asyncio.to_thread(stopped_at, server.env["DATABASE_URL"])
    finally:
        for _, ws in kiosks:
            await ws.close()
    delays: dict[int, list[float]] = {}
    for (worker, _), arrival in zip(kiosks, arrivals, strict=True):
        if isinstance(arrival, dict) and arrival.get("reason") == "emergency_stop":
            delays.setdefault(worker, []).append((arrival["arrived"] - committed) * 1000)
    await asyncio.to_thread(server.manage, "resume_realtime", "--reason", "benchmark")
    return {"channel": channel, "sessions": len(kiosks), "delays_ms": delays}


async def trials(server: LiveServer, fleet_dir: Path, nginx_port: int, keys: list[str], options) -> list[dict]:
    ports = worker_ports(fleet_dir / "serve")
    urls = [f"ws://127.0.0.1:{port}/ws/kiosk/" for port in ports]
    token = server.manage("create_api_token", "admin").strip().splitlines()[-1]
    stops = {
        "command": partial(server.manage, "emergency_stop", "--reason", "benchmark"),
        "api": partial(stop_by_api, nginx_port, token),
    }
    results = []
    for number in range(options.trials):
        channel = CHANNELS[number % len(CHANNELS)]
        result = await trial(server, urls, keys, channel, stops[channel], number)
        every = [d for delays in result["delays_ms"].values() for d in delays]
        last = max(every, default=float("nan"))
        print(f"  trial {number} ({channel}): {len(every)}/{result['sessions']} reached, last {last:.0f} ms")
        results.append(result)
    return results


def summary(results: list[dict], workers: int) -> dict:
    by_worker = {w: [d for r in results for d in r["delays_ms"].get(w, [])] for w in range(workers)}
    by_channel = {
        c: [d for r in results if r["channel"] == c for ds in r["delays_ms"].values() for d in ds] for c in CHANNELS
    }
    every = [d for delays in by_worker.values() for d in delays]
    stat = lambda samples: {**percentiles(samples), "max": round(max(samples), 1) if samples else None}  # noqa: E731
    return {
        "sessions_reached": len(every),
        "sessions_live": sum(r["sessions"] for r in results),
        "all_ms": stat(every),
        "by_worker_ms": {str(w + 1): stat(d) for w, d in by_worker.items()},
        "by_channel_ms": {c: stat(d) for c, d in by_channel.items()},
    }


def run(options) -> dict:
    with tempfile.TemporaryDirectory() as directory, throwaway_database("postgres", Path(directory)) as url:
        scratch, upstream_port = Path(directory), free_port()
        env = {
            "REDIS_URL": REDIS_URL,
            "REALTIME_API_URL": f"ws://127.0.0.1:{upstream_port}/v1/realtime",
            "REALTIME_COST_LIMIT_PER_HOUR": "100000",  # every session's cost estimate fits: all on Realtime
            **CONNECTION_LIMITS_LIFTED,
        }
        server = LiveServer(url, scratch, env)
        server.prepare()
        keys = create_kiosks(server, options.sessions)
        server.manage("rollout", "--enable", "--percent", "100", "--reason", "benchmark")
        with server.log.open("ab") as log:
            standin = subprocess.Popen(
                [sys.executable, "tests/support/load_upstream.py", "--port", str(upstream_port)],
                cwd=REPO,
                env=server.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(upstream_port, 60, standin, server.log)
            fleet_dir = scratch / "fleet"
            fleet_dir.mkdir()
            with serving(server.env, options.workers, fleet_dir) as fleet:
                nginx_port = urlsplit(fleet.url).port
                results = asyncio.run(trials(server, fleet_dir, nginx_port, keys, options))
        finally:
            standin.terminate()
            standin.wait(timeout=10)
    return {
        "workers": options.workers,
        "sessions": options.sessions,
        "trials": options.trials,
        **summary(results, options.workers),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=50, help="live sessions in each trial, over all workers")
    parser.add_argument("--trials", type=int, default=6, help="stops, by turns from the command and the API")
    parser.add_argument("--json", help="also write the result to this path")
    options = parser.parse_args()
    result = run(options)
    print(json.dumps(result, indent=2))
    if options.json:
        Path(options.json).write_text(json.dumps(result, indent=2))
    return 0 if result["sessions_reached"] == result["sessions_live"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
