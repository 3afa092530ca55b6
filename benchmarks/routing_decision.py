"""Benchmark: one routing decision per session, as the kiosk socket makes it, on SQLite and PostgreSQL.

For each database: a fresh migrated one (a SQLite file; a throwaway PostgreSQL database, dropped
afterwards), Realtime enabled at 50 % (one audited `enable` with the percentage), so both paths occur,
and the hourly cost limit raised out of the way (every Realtime decision pays for a full admission).
Then `--sessions` distinct new session ids are decided one after another, then the same ids again
(reconnects). Each database runs in its own process (Django is set up once per process); its log
output goes to a file, as a server's would. Prints p50/p95/max per database and scenario, the
realtime/legacy counts with their reasons, and how many reconnects changed path.

    python benchmarks/routing_decision.py [--sessions 500] [--database sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers

from benchmarks.failover import percentile
from benchmarks.fresh_database import KINDS, run_worker


def decide(session_id: str):
    """One session's routing decision as the kiosk socket makes it: policy, probes, cost admission, one record.

    (Before this function took all of it, the socket called decide_for_session, then cost admission.)
    """
    from fallback.services import decide_for_session

    return decide_for_session(session_id)


PERCENT = 50
COST_LIMIT_USD = "1000000"  # no admission is refused for money: the Realtime path is measured whole
WARM_UP = 20  # decisions (other session ids) before timing: connection, imports, first queries


def scenario(session_ids: list[str]) -> dict:
    """Time ``decide`` once per id, in order: milliseconds, SQL statements, and each session's (mode, reason)."""
    from django.db import connection

    statements = 0

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    times, queries, outcomes = [], [], {}
    with connection.execute_wrapper(count):
        for session_id in session_ids:
            before, started = statements, time.perf_counter()
            decision = decide(session_id)
            times.append((time.perf_counter() - started) * 1000)
            queries.append(statements - before)
            outcomes[session_id] = (decision.mode, decision.reason)
    return {"ms": times, "queries": queries, "outcomes": outcomes}


def worker(sessions: int) -> None:
    """In a process whose DATABASE_URL is the migrated database: run both scenarios, print one JSON line."""
    import django

    django.setup()
    from fallback.emergency import apply_action

    apply_action("enable", actor="cli:benchmark", reason="routing decision benchmark", percent=PERCENT)
    for number in range(WARM_UP):
        decide(f"warm-up-{number}")
    ids = [f"kiosk-{number % 20:02d}:sess-{number:05d}" for number in range(sessions)]
    new = scenario(ids)
    again = scenario(ids)
    print(json.dumps({"new": new, "reconnect": again}))


def run(kind: str, sessions: int, directory: Path) -> dict:
    """Migrate a fresh database of ``kind``, run the worker on it, and return its results."""
    argv = [__file__, "--worker", "--sessions", str(sessions)]
    return run_worker(kind, directory, argv, {"REALTIME_COST_LIMIT_PER_HOUR": COST_LIMIT_USD})


def spread(ms: list[float]) -> str:
    if not ms:
        return "-"
    return f"p50={percentile(ms, 0.5):.2f} ms  p95={percentile(ms, 0.95):.2f} ms  max={max(ms):.2f} ms"


def report(kind: str, results: dict) -> None:
    print(f"\n{kind} (migrate {results['migrate_s']:.1f} s, run {results['run_s']:.1f} s)")
    for name in ("new", "reconnect"):
        ms, outcomes = results[name]["ms"], results[name]["outcomes"]
        modes = [mode for mode, _reason in outcomes.values()]
        reasons = Counter(f"{mode}/{reason}" for mode, reason in outcomes.values())
        rows = list(zip(ms, results[name]["queries"], modes, strict=True))
        counts = f"realtime={modes.count('realtime')} legacy={modes.count('legacy')}"
        print(f"  {name:<9} n={len(ms)}  {spread(ms)}  {counts}")
        for mode in ("realtime", "legacy"):
            times = [t for t, _q, m in rows if m == mode]
            statements = sorted({q for _t, q, m in rows if m == mode})
            print(f"            {mode:<8} {spread(times)}  SQL statements each: {statements}")
        print(f"            reasons: {', '.join(f'{key} {count}' for key, count in sorted(reasons.items()))}")
    first, again = results["new"]["outcomes"], results["reconnect"]["outcomes"]
    changed = sum(first[session][0] != again[session][0] for session in first)
    print(f"  reconnects that changed path: {changed} of {len(first)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
        worker(args.sessions)
        return
    kinds = KINDS if args.database == "both" else [args.database]
    print(f"routing decision per session: {args.sessions} new sessions, then the same again; Realtime at {PERCENT} %")
    print(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as directory:
        for kind in kinds:
            report(kind, run(kind, args.sessions, Path(directory)))


if __name__ == "__main__":
    main()
