"""Run fallback operations in several OS processes against one real database (SQLite file or PostgreSQL).

As a script: ``python tests/fallback_harness.py MODE`` (DATABASE_URL in the environment) sets Django up,
prints "ready", waits for a line on stdin, runs MODE once and prints one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "reception_project.settings"}


def migrate(database_url: str) -> None:
    """Create the fallback tables (and nothing else) in the given database."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "fallback", "-v", "0"],
        cwd=ROOT,
        env=_env(database_url),
        check=True,
        timeout=120,
    )


def sqlite_database(directory: Path) -> str:
    """A migrated SQLite file database (WAL, immediate transactions, as in production)."""
    url = f"sqlite:///{directory / 'fallback.db'}"
    migrate(url)
    return url


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway, migrated PostgreSQL database, dropped afterwards."""
    import psycopg

    name = f"fallback_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgres://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_workers(database_url: str, mode: str, processes: int, *, arg: str = "", env: dict | None = None) -> list[dict]:
    """Start ``processes`` workers, release them together once all are ready, and return their JSON results."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, mode, arg],
            cwd=ROOT,
            env={**_env(database_url), **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:  # each worker says "ready" once Django is set up and connected
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"worker did not start: {proc.communicate(timeout=30)[1][-2000:]}")
    for proc in procs:  # the starting gun
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}): {err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def _main(mode: str, arg: str) -> dict:
    import django

    django.setup()
    from django.db import connection

    from fallback import guards
    from fallback.emergency import apply_action
    from fallback.services import decide_for_session

    connection.ensure_connection()  # connect before the start line, so only the operation races
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "fail_connections":  # ten failed connections each: the fast path trips once in total
        return {"transitions": [t for t in (guards.record_connection_result(False) for _ in range(10)) if t]}
    if mode == "fatal":
        return {"opened": guards.record_fatal_upstream_error("401 invalid_api_key")}
    if mode == "open_cooled":  # set-up for "probe": the connection guard open, its cooldown over
        from django.utils import timezone

        from fallback.models import GuardState

        guards.record_fatal_upstream_error("set-up")
        GuardState.objects.filter(name="connection").update(retry_at=timezone.now())
        return {}
    if mode == "probe":
        return {"admitted": guards.acquire_probe("connection")}
    if mode == "stop":  # an emergency stop from another process, broadcast on its channel layer
        apply_action("emergency_stop", actor="cli:harness", reason=arg)
        return {}
    if mode == "bench":
        apply_action("enable", actor="system:bench", reason="benchmark")
        apply_action("set_rollout_percentage", actor="system:bench", reason="benchmark", percent=50)
        times = []
        for i in range(300):
            began = time.perf_counter()
            decide_for_session(f"bench-{i}")
            times.append((time.perf_counter() - began) * 1000)
        return {"p50_ms": _percentile(times, 50), "p95_ms": _percentile(times, 95)}
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(_main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")))
