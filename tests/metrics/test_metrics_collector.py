"""MetricsCollector: batching, no database work on the caller's thread, nothing lost; alerts once per episode."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fallback import guards
from fallback.models import FallbackEvent, GuardName, GuardState
from metrics import collector as collector_module
from metrics import ledger
from metrics.alerts import evaluate_alerts
from metrics.collector import Conversation, MetricsCollector, get_collector
from metrics.models import AlertState, CostBucket, SessionMetric, TurnMetric
from tests.metrics import harness as metrics_harness
from tests.metrics.test_cost import USAGE_A

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("reference_prices")]


@pytest.fixture
def fresh_collector():
    collector = MetricsCollector(interval=0.05)
    yield collector
    collector.stop()


def test_a_session_is_recorded_with_its_turns_cost_paths_and_fallbacks(fresh_collector, settings):
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    from metrics.cost import admit_realtime_session

    assert admit_realtime_session("visit-1").admitted
    fresh_collector.record_session_start("visit-1", "realtime", "rollout")
    fresh_collector.record_turn(
        "visit-1",
        "realtime",
        model="gpt-realtime",
        usage=USAGE_A,
        ttfa_ms=700,
        upstream_ms=450,
        server_ms=250,
        response_id="resp_1",
    )
    FallbackEvent.objects.create(session_id="visit-1", reason="UPSTREAM_ERROR", detail="server_error")
    fresh_collector.record_turn(
        "visit-1", "legacy", usage={"chat_model": "gpt-4o-mini", "text_input_tokens": 1000}, ttfa_ms=1200
    )
    fresh_collector.record_session_end("visit-1", "completed")
    assert fresh_collector.flush()
    session = SessionMetric.objects.get(session_id="visit-1")
    # realtime turn 0.036176 + legacy turn 1000 × 0.15 / 1e6 = 0.00015
    assert session.cost_usd == Decimal("0.036326")
    assert (session.paths, session.turns, session.fallbacks, session.outcome) == ("realtime,legacy", 2, 1, "completed")
    assert ledger.spend_last_hour() == Decimal("0.036176")  # only Realtime spend feeds the hourly guard
    error_guard = GuardState.objects.get(name=GuardName.ERROR_RATE)
    assert error_guard.window_samples == 1 and error_guard.window_failures == 1  # upstream fallback = a failure
    assert ledger.reserved_unused() == 0  # settled after the last turn


def test_a_session_keeps_how_its_conversation_went_and_its_rating(fresh_collector):
    fresh_collector.record_session_start("visit-q", "legacy", "disabled")
    fresh_collector.record_feedback("visit-q", 2)  # rated before the end: the end keeps the rating
    assert fresh_collector.flush()
    fresh_collector.record_session_end("visit-q", "completed", conversation=Conversation(4, 1, 2, 75.5))
    fresh_collector.record_session_end("visit-other", "abandoned")
    fresh_collector.record_feedback("visit-other", 3)  # in the same batch as its end
    assert fresh_collector.flush()
    session = SessionMetric.objects.get(session_id="visit-q")
    assert (session.visitor_turns, session.reasks, session.corrections) == (4, 1, 2)
    assert (session.seconds_to_complete, session.satisfaction) == (75.5, 2)
    other = SessionMetric.objects.get(session_id="visit-other")
    assert (other.visitor_turns, other.seconds_to_complete, other.satisfaction) == (0, None, 3)
    with pytest.raises(ValueError, match="Unknown rating"):
        fresh_collector.record_feedback("visit-q", 4)


def test_recording_does_no_database_work_on_the_callers_thread(fresh_collector):
    # The caller's connection holds the SQLite write lock: if recording touched the database it would block or fail.
    with transaction.atomic():
        AlertState.objects.create(name="cost")
        with CaptureQueriesContext(connection) as queries:
            for i in range(500):
                fresh_collector.record_turn(f"s{i % 7}", "legacy", ttfa_ms=float(i))
        assert len(queries) == 0
        time.sleep(0.3)  # a quiet period: the writer thread tries meanwhile, and nothing may get written
        assert fresh_collector.pending == 500
        writer = fresh_collector._thread
        assert writer is not None and writer.ident != threading.get_ident()
    assert fresh_collector.flush(timeout=15)
    assert TurnMetric.objects.count() == 500


async def test_recording_from_the_event_loop_needs_no_await(fresh_collector):
    # Django refuses ORM calls on the event loop (SynchronousOnlyOperation): recording must not make any.
    for i in range(100):
        fresh_collector.record_turn(
            "async-session", "realtime", model="gpt-realtime", usage=USAGE_A, response_id=f"resp_async_{i}"
        )
    fresh_collector.record_session_end("async-session", "completed")
    from asgiref.sync import sync_to_async

    assert await sync_to_async(fresh_collector.flush)()
    assert await TurnMetric.objects.filter(session_id="async-session").acount() == 100


def test_a_burst_from_many_threads_lands_in_batches(fresh_collector):
    fresh_collector.batch_size = 200
    batches = []
    real_write = collector_module.write_batch

    def counting_write(batch):
        batches.append(len(batch))
        real_write(batch)

    collector_module.write_batch = counting_write
    try:
        began = time.perf_counter()
        threads = [
            threading.Thread(
                target=lambda t=t: [fresh_collector.record_turn(f"t{t}", "legacy", ttfa_ms=1.0) for _ in range(1000)]
            )
            for t in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        enqueued = time.perf_counter() - began
        assert fresh_collector.flush(timeout=30)
        total = time.perf_counter() - began
    finally:
        collector_module.write_batch = real_write
    assert TurnMetric.objects.count() == 4000
    assert sum(batches) == 4000 and max(batches) <= 200 and len(batches) < 4000 / 10
    print(
        f"\ncollector: 4000 turns enqueued in {enqueued * 1000:.0f} ms, written in {total:.2f} s "
        f"({4000 / total:.0f} rows/s, {len(batches)} batches)"
    )


def test_retried_batches_do_not_double_count():
    batch = [
        collector_module.TurnRecord(
            "dup", "realtime", "gpt-realtime", USAGE_A, 500.0, None, None, None, True, "", "resp_dup", timezone.now()
        )
    ]
    collector_module.write_batch(batch)
    collector_module.write_batch(batch)  # a retry after an unacknowledged commit
    assert TurnMetric.objects.filter(event_id="resp_dup").count() == 1
    assert sum(CostBucket.objects.values_list("usd", flat=True)) == Decimal("0.036176")


def test_flush_and_stop_do_not_wait_out_the_batch_interval():
    collector = MetricsCollector(interval=60)  # a batch waits up to a minute for more records
    collector.record_turn("hurried", "legacy", ttfa_ms=1.0)
    assert collector.flush(timeout=10)
    assert TurnMetric.objects.filter(session_id="hurried").count() == 1
    stopped = threading.Event()
    threading.Thread(target=lambda: collector.stop() and stopped.set(), daemon=True).start()
    assert stopped.wait(timeout=10)  # the writer thread ended, not at its next poll a minute later


def test_module_collector_is_one_per_process():
    assert get_collector() is get_collector()
    assert collector_module.collector.batch_size == get_collector().batch_size


def test_nothing_is_lost_when_processes_exit_without_flushing(tmp_path):
    url = metrics_harness.sqlite_database(tmp_path)
    results = metrics_harness.run_workers(url, "burst_exit", 3, arg="2000")
    database = url.removeprefix("sqlite:///")
    rows = sqlite3.connect(database).execute("SELECT COUNT(*) FROM metrics_turnmetric").fetchone()[0]
    assert rows == 6000
    print(f"\nenqueue of 2000 turns: max {max(r['enqueue_seconds'] for r in results) * 1000:.0f} ms per process")


# --- alerts ---------------------------------------------------------------------------------------------


class Webhook(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):
        Webhook.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    Webhook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    yield Webhook.received
    server.shutdown()


def test_cost_alert_is_raised_once_per_episode_and_cleared_once(settings, webhook, caplog):
    settings.ALERT_COST_THRESHOLD = 1.0
    now = timezone.now()
    guards.record_cost(Decimal("1.5"), 1e9, now=now)
    assert evaluate_alerts(now=now) == {"cost": "raised"}
    assert evaluate_alerts(now=now) == {}  # still above: no second alert
    assert len(webhook) == 1 and b"ALERT" in webhook[0]
    assert "Realtime spend 1.50 USD" in caplog.text
    later = now + timedelta(minutes=61)  # the spend has left the rolling hour
    assert evaluate_alerts(now=later) == {"cost": "cleared"}
    assert evaluate_alerts(now=later) == {}
    assert len(webhook) == 2 and b"RESOLVED" in webhook[1]
    assert AlertState.objects.get(name="cost").episodes == 1


def test_error_rate_alert_needs_the_minimum_sample(settings, webhook):
    settings.ALERT_MIN_SAMPLE = 10
    settings.ALERT_ERROR_RATE_THRESHOLD = 0.2
    now = timezone.now()
    for i in range(9):
        SessionMetric.objects.create(session_id=f"e{i}", started_at=now, ended_at=now, mode="legacy", outcome="error")
    assert "error_rate" not in evaluate_alerts(now=now)  # 9 of 9 failed, but below the minimum sample
    SessionMetric.objects.create(session_id="ok", started_at=now, ended_at=now, mode="legacy", outcome="completed")
    assert evaluate_alerts(now=now)["error_rate"] == "raised"  # 9 / 10 >= 0.2


def test_a_failing_webhook_is_logged_not_raised(settings, caplog):
    settings.ALERT_COST_THRESHOLD = 0.5
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/unreachable"
    settings.ALERT_WEBHOOK_TIMEOUT_SECONDS = 0.5
    guards.record_cost(Decimal("1"), 1e9)
    assert evaluate_alerts() == {"cost": "raised"}
    assert "alert webhook failed: ConnectError" in caplog.text
    assert "unreachable" not in caplog.text  # the URL (a secret) is never logged


def assert_one_alert_from_racing_processes(url: str, hook_url: str) -> None:
    env = {"ALERT_COST_THRESHOLD": "1.0", "ALERT_WEBHOOK_URL": hook_url}
    metrics_harness.run_workers(url, "seed_spend", 1, arg="2.0", env=env)
    results = metrics_harness.run_workers(url, "alert", 8, env=env)
    assert sum(1 for r in results if r["transitions"].get("cost") == "raised") == 1


def test_racing_processes_send_one_alert_on_sqlite(tmp_path, webhook, settings):
    assert_one_alert_from_racing_processes(metrics_harness.sqlite_database(tmp_path), settings.ALERT_WEBHOOK_URL)
    assert len(webhook) == 1


@pytest.mark.postgres
def test_racing_processes_send_one_alert_on_postgres(webhook, settings):
    with metrics_harness.postgres_database() as url:
        assert_one_alert_from_racing_processes(url, settings.ALERT_WEBHOOK_URL)
    assert len(webhook) == 1


def test_alerts_are_checked_at_most_once_per_interval_and_on_every_flush(monkeypatch):
    """Under load a batch comes every `interval`; its alert check (several queries) follows at most every
    `alert_interval`, and flush() still returns only once what it waited for is alert-checked."""
    checked = []
    monkeypatch.setattr(collector_module, "evaluate_alerts", lambda: checked.append(1))
    collector = MetricsCollector(interval=0.02, alert_interval=3600)
    try:
        collector.record_turn("s-1", "realtime", model="gpt-realtime", usage=USAGE_A, response_id="r-1")
        assert collector.flush()
        assert len(checked) == 1  # the first batch: checked at once (no check was done yet)
        for number in range(2, 5):
            collector.record_turn("s-1", "realtime", model="gpt-realtime", usage=USAGE_A, response_id=f"r-{number}")
            deadline = time.monotonic() + 5
            while not TurnMetric.objects.filter(event_id=f"r-{number}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(0.1)  # several batch intervals with nothing new
        assert (TurnMetric.objects.count(), len(checked), collector.pending) == (4, 1, 3)
        assert collector.flush()
        assert (len(checked), collector.pending) == (2, 0)
    finally:
        collector.stop()


def test_a_batch_feeds_the_latency_guard_in_one_update_with_the_price_it_was_given():
    from metrics.cost import price_for

    price = price_for("gpt-realtime")
    guards.record_turn_latency(500.0)  # the guard's window is open
    batch = [  # one slow turn (over SLOW_TURN_MS) in the middle
        collector_module.TurnRecord(
            "s-2", "realtime", "gpt-realtime", USAGE_A, ttfa, None, None, None, True, "", f"b-{n}", price=price
        )
        for n, ttfa in enumerate([700.0, 2600.0, 900.0])
    ]
    with CaptureQueriesContext(connection) as queries:
        collector_module.write_batch(batch)
    guard = GuardState.objects.get(name=GuardName.LATENCY)
    assert (guard.window_samples, guard.window_failures, guard.consecutive_failures) == (4, 1, 0)
    sql = [q["sql"] for q in queries]
    assert sum('UPDATE "fallback_guardstate"' in s for s in sql) == 1
    assert not any('FROM "metrics_modelprice"' in s for s in sql)  # priced already: no lookup
    assert set(TurnMetric.objects.values_list("price_id", flat=True)) == {price.pk}
