"""Benchmark: what one Realtime response costs the server process in bookkeeping, on SQLite and PostgreSQL.

Each ``response.done`` is accounted as the voice layer's ``HybridVoiceManager._account`` does it, through
``core.bookkeeping``: the spend is priced and added to the rolling hour at once (``record_realtime_spend``), then
the turn goes to the metrics collector, whose writer thread writes it in a batch with the latency guard's samples
and, at most once a second, the alert check. That ORM work holds the interpreter lock the event loop needs to
relay audio (docs/deploy.md, "Where the time over the bare relay goes"). Each database is measured twice: with
``BOOKKEEPING_PROCESS`` off (the work in the server process's threads: the baseline), then on (in its helper
process, the server process only handing calls over).

Responses come at ``--rate`` per second (12.5: 50 kiosks, each answered every 4 s, as in relay_capacity.py)
for ``--sessions`` sessions admitted to Realtime beforehand. Prints SQL statements and CPU milliseconds per
response in the calling thread and the writer thread, the helper's CPU, and the ratio of the server process's
CPU per response, helper over threads.

    python benchmarks/response_accounting.py [--responses 250] [--rate 12.5] [--database sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database

from benchmarks.failover import percentile
from benchmarks.fresh_database import KINDS, run_worker

COST_LIMIT_USD = "1000000"  # the limit is never reached: every response is accounted in full
MODES = ("threads", "helper")  # BOOKKEEPING_PROCESS off, then on (core.bookkeeping)


class StatementCounter:
    """Counts the SQL statements of every database connection, per thread."""

    def __init__(self) -> None:
        self.by_thread: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        name = threading.current_thread().name
        with self._lock:
            self.by_thread[name] = self.by_thread.get(name, 0) + 1
        return execute(sql, params, many, context)

    def attach(self, sender, connection, **kwargs) -> None:
        connection.execute_wrappers.append(self)


def thread_cpu_seconds(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def admitted_sessions(count: int) -> list[str]:
    """Realtime enabled for every session, and ``count`` sessions admitted: each holds a cost reservation that its
    responses' spend counts against, as a live session's does."""
    from fallback.emergency import apply_action
    from fallback.services import decide_for_session

    apply_action("enable", actor="cli:benchmark", reason="response accounting benchmark", percent=100)
    ids = [f"kiosk-{number:02d}:sess-{number:05d}" for number in range(count)]
    for session_id in ids:
        decide_for_session(session_id)
    return ids


def worker(responses: int, rate: float, sessions: int) -> None:
    """In a process whose DATABASE_URL is the migrated database: account the responses, print one JSON line."""
    import django

    django.setup()
    from django.conf import settings
    from django.db.backends.signals import connection_created

    from core import bookkeeping
    from fallback.services import record_realtime_spend
    from metrics.collector import MetricsCollector
    from tests.metrics.test_cost import USAGE_A as USAGE  # a response.done usage object, as the API sends it

    ids = admitted_sessions(sessions)
    counter = StatementCounter()
    connection_created.connect(counter.attach)
    from django.db import connection

    counter.attach(None, connection)
    collector = MetricsCollector()
    in_helper = settings.BOOKKEEPING_PROCESS
    helper_cpu = bookkeeping.call(time.process_time) if in_helper else 0.0  # also starts the helper
    main_cpu, started = [], time.perf_counter()
    for number in range(responses):
        time.sleep(max(0.0, started + number / rate - time.perf_counter()))
        session_id = ids[number % sessions]
        before = time.thread_time()
        spend = bookkeeping.call(record_realtime_spend, session_id, settings.REALTIME_MODEL, USAGE)
        collector.record_turn(
            session_id,
            "realtime",
            model=settings.REALTIME_MODEL,
            usage=USAGE,
            ttfa_ms=420.0,
            upstream_ms=400.0,
            server_ms=20.0,
            cost_usd=spend.usd,
            response_id=f"resp_{number}",
            spend_recorded=spend.usd is not None,
        )
        main_cpu.append((time.thread_time() - before) * 1000)
    writer = collector._thread
    collector.flush(timeout=60)
    writer_cpu = thread_cpu_seconds(writer) * 1000 if writer is not None and writer.is_alive() else float("nan")
    helper_cpu = (bookkeeping.call(time.process_time) - helper_cpu) * 1000 if in_helper else 0.0
    collector.stop()
    statements = counter.by_thread
    print(
        json.dumps(
            {
                "responses": responses,
                "calling_ms": main_cpu,
                "calling_statements": statements.get(threading.current_thread().name, 0) / responses,
                "writer_ms": writer_cpu / responses,
                "writer_statements": statements.get("metrics-writer", 0) / responses,
                "helper_ms": helper_cpu / responses,
            }
        )
    )


def report(kind: str, mode: str, results: dict) -> float:
    """Print one run; return the CPU per response spent in the server's own process (calling and writer thread)."""
    calling, writer = results["calling_ms"], results["writer_ms"]
    mean = sum(calling) / len(calling)
    timing = f"migrate {results['migrate_s']:.1f} s, run {results['run_s']:.1f} s"
    print(f"\n{kind}, bookkeeping in {mode} ({timing}, {results['responses']} responses)")
    print(
        f"  calling thread: {results['calling_statements']:.1f} SQL statements, CPU mean {mean:.2f} ms"
        f" (p50 {percentile(calling, 0.5):.2f}, p95 {percentile(calling, 0.95):.2f})"
    )
    print(f"  writer thread:  {results['writer_statements']:.1f} SQL statements, CPU {writer:.2f} ms")
    if mode == "helper":
        print(f"  helper process: CPU {results['helper_ms']:.2f} ms (its SQL statements are not counted)")
    print(
        f"  per response in the server process: {results['calling_statements'] + results['writer_statements']:.1f}"
        f" SQL statements, CPU {mean + writer:.2f} ms"
    )
    return mean + writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=250)
    parser.add_argument("--rate", type=float, default=12.5, help="responses per second")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.responses, args.rate, args.sessions)
        return
    kinds = KINDS if args.database == "both" else [args.database]
    print(f"bookkeeping per Realtime response: {args.responses} at {args.rate}/s over {args.sessions} sessions")
    print(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())} ({os.cpu_count()} CPUs)")
    argv = [__file__, "--worker", *("--responses", str(args.responses), "--rate", str(args.rate))]
    argv += ["--sessions", str(args.sessions)]
    for kind in kinds:
        here = {}
        for mode in MODES:
            env = {"REALTIME_COST_LIMIT_PER_HOUR": COST_LIMIT_USD, "BOOKKEEPING_PROCESS": str(mode == "helper").lower()}
            with tempfile.TemporaryDirectory() as directory:
                here[mode] = report(kind, mode, run_worker(kind, Path(directory), argv, env))
        ratio = here["helper"] / here["threads"]
        print(f"  {kind}: CPU in the server process per response, helper over threads: {ratio:.2f}")


if __name__ == "__main__":
    main()
