"""The bookkeeping helper process: the same database, errors raised here, and nothing lost when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from core import bookkeeping
from fallback.services import record_realtime_spend
from metrics import ledger
from metrics.collector import MetricsCollector
from metrics.models import TurnMetric
from tests.metrics.test_cost import USAGE_A
from tests.support.live_server import REPO

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("reference_prices")]


@pytest.fixture
def helper_on(settings):
    settings.BOOKKEEPING_PROCESS = True
    yield
    bookkeeping.stop()


def test_a_response_is_priced_in_the_helper_on_this_processs_database(helper_on):
    helper = bookkeeping.call(os.getpid)
    assert helper != os.getpid()
    spend = bookkeeping.call(record_realtime_spend, "visit-1", "gpt-realtime", USAGE_A)
    assert spend.usd == ledger.spend_last_hour() > 0  # written there, read here
    assert spend.price.model == "gpt-realtime" and not spend.limit_reached
    assert bookkeeping.call(os.getpid) == helper  # one helper, kept


async def test_the_event_loop_awaits_the_helper(helper_on):
    assert await bookkeeping.call_async(os.getpid) != os.getpid()


def test_an_error_in_the_helper_is_raised_here(helper_on):
    with pytest.raises(ValueError, match="invalid literal"):
        bookkeeping.call(int, "not a number")
    assert bookkeeping.call(int, "7") == 7  # the helper goes on


def test_the_metrics_writer_writes_through_the_helper_and_survives_its_death(helper_on, caplog):
    collector = MetricsCollector(interval=0.02)
    try:
        collector.record_turn("visit-2", "realtime", model="gpt-realtime", usage=USAGE_A, response_id="r-1")
        assert collector.flush()
        os.kill(bookkeeping.call(os.getpid), signal.SIGKILL)
        time.sleep(0.2)
        collector.record_turn("visit-2", "realtime", model="gpt-realtime", usage=USAGE_A, response_id="r-2")
        assert collector.flush()  # this batch was written here
        collector.record_turn("visit-2", "realtime", model="gpt-realtime", usage=USAGE_A, response_id="r-3")
        assert collector.flush()  # and this one by a new helper
    finally:
        collector.stop()
    assert sorted(TurnMetric.objects.values_list("event_id", flat=True)) == ["r-1", "r-2", "r-3"]
    assert "runs in this process" in caplog.text  # r-2 took the way round the dead helper
    assert bookkeeping.call(os.getpid) != os.getpid()


HELPER_OF_A_SERVER = """
import os, sys, time
import django
django.setup()
from django.conf import settings
from core import bookkeeping
settings.BOOKKEEPING_PROCESS = True
print(bookkeeping.call(os.getpid), flush=True)
time.sleep(60)
"""


def test_the_helper_ends_with_a_killed_server_process():
    server = subprocess.Popen(
        [sys.executable, "-c", HELPER_OF_A_SERVER],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "reception_project.settings"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        helper = int(server.stdout.readline())
        assert helper != server.pid
        server.kill()
        server.wait(timeout=10)
        deadline = time.monotonic() + 3 * bookkeeping.PARENT_CHECK_SECONDS + 2
        while alive(helper) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(helper)
    finally:
        server.kill()
        server.stdout.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # an exited child of init not yet reaped is a zombie: gone
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_off_it_runs_here(settings):
    settings.BOOKKEEPING_PROCESS = False
    assert bookkeeping.call(os.getpid) == os.getpid()
