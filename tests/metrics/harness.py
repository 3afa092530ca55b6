"""Run metrics operations in several OS processes against one real database (SQLite file or PostgreSQL).

As a script: ``python tests/metrics/harness.py MODE ARG`` (DATABASE_URL in the environment) sets Django up,
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


def run_workers(
    database_url: str, mode: str, processes: int, *, arg: str = "", env: dict[str, str] | None = None
) -> list[dict]:
    """``processes`` workers running MODE with ARG:index, released together."""
    return live_server.run_workers(__file__, database_url, mode, [f"{arg}:{i}" for i in range(processes)], env)


def _main(mode: str, arg: str) -> dict:
    import time

    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()  # connect before the start line, so only the operation races
    print("ready", flush=True)
    sys.stdin.readline()
    param, index = arg.rsplit(":", 1)
    if mode == "seed_spend":  # set-up: spend already in the rolling hour
        from fallback.guards import record_cost

        record_cost(float(param), 1e9)
        return {}
    if mode == "admit":  # the session manager's admission call, for a session of this worker
        from metrics.cost import admit_realtime_session

        admission = admit_realtime_session(f"session-{param}-{index}")
        return {"admitted": admission.admitted, "reason": admission.reason, "estimate": str(admission.estimate_usd)}
    if mode == "committed":
        from metrics.ledger import committed_last_hour, reserved_unused, spend_last_hour

        return {
            "spend": str(spend_last_hour()),
            "reserved": str(reserved_unused()),
            "committed": str(committed_last_hour()),
        }
    if mode == "alert":  # every worker evaluates the alerts at the same moment
        from metrics.alerts import evaluate_alerts

        return {"transitions": evaluate_alerts()}
    if mode == "burst_exit":  # record turns and exit without an explicit flush: atexit must write them all
        from metrics.collector import collector

        began = time.perf_counter()
        for i in range(int(param)):
            collector.record_turn(f"burst-{index}", "legacy", ttfa_ms=float(i % 900), response_id=f"b{index}-{i}")
        return {"enqueue_seconds": time.perf_counter() - began}
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    print(json.dumps(_main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ":0")))
