"""Run fallback operations in several OS processes against one real database (SQLite file or PostgreSQL).

As a script: ``python tests/fallback/harness.py MODE`` (DATABASE_URL in the environment) sets Django up,
prints "ready", waits for a line on stdin, runs MODE once and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # also when it runs as a worker script

from tests.support import live_server  # noqa: E402
from tests.support.live_server import migrated_postgres as postgres_database  # noqa: E402, F401
from tests.support.live_server import migrated_sqlite as sqlite_database  # noqa: E402, F401


def run_workers(database_url: str, mode: str, processes: int, *, arg: str = "", env: dict | None = None) -> list[dict]:
    """``processes`` workers running MODE with the same ARG, released together."""
    return live_server.run_workers(__file__, database_url, mode, [arg] * processes, env)


def _main(mode: str, arg: str) -> dict:
    import django

    django.setup()
    from django.db import connection

    from fallback import guards
    from fallback.emergency import apply_action

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
    if mode == "decide":  # route the comma-separated sessions as this process's kiosk socket would
        from fallback.services import decide_for_session

        return {"decisions": [[d.mode, d.reason] for d in map(decide_for_session, arg.split(","))]}
    if mode == "stop":  # an emergency stop from another process, broadcast on its channel layer
        apply_action("emergency_stop", actor="cli:harness", reason=arg)
        return {}
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    print(json.dumps(_main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")))
