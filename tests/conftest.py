"""Shared fixtures: isolated workflow state per test, kiosks with keys, the demo directory, the reference prices,
a running Realtime emulator."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterator

# Tests load the speech models only where they use them (and the live servers they start, never).
os.environ.setdefault("SPEECH_WARM_UP", "false")

import pytest
from django.apps import apps
from hypothesis import settings as hypothesis_settings

from realtime.emulator import EmulatorConfig, EmulatorServer, ScriptedBrain
from reception.demo import create_demo_data
from reception.models import Kiosk
from tests.support.clock import RUN_STARTED, midday_time_zone
from tests.support.realtime import TEST_KEY, assert_no_leaked_tasks

# The suite runs Hypothesis' default 100 examples per property that does not set its own count;
# `pytest --hypothesis-profile thorough` runs ten times as many (the routing machine, the kiosk fuzz).
hypothesis_settings.register_profile("thorough", max_examples=1000)


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """Passwords made in this process are hashed with a fast hasher (Django's advice for tests): the deployment's
    takes 0.4 s a hash here, and the demo directory alone makes one for every test that uses it. The servers and
    commands a test starts keep the deployment's hashers for the users they make."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True, scope="session")
def bookkeeping_in_threads():
    """This process's database work is the test's transaction, which a helper process could not see: the
    bookkeeping runs in threads here (tests/core/test_bookkeeping.py turns the helper on). The servers a test
    starts run it as deployed, in their helper process."""
    from django.conf import settings

    settings.BOOKKEEPING_PROCESS = False


def pytest_configure(config):
    """The run's local clock reads midday, so no run crosses local midnight: today's appointments, made at the
    start of a test (or of a module's live server) and looked up by local date later, stay today's. A run that
    crossed it (at 00:00 in Tokyo) lost the demo's 10:00 appointment in mid-story. The servers and commands the
    tests start inherit the zone from the environment."""
    from django.test import override_settings

    zone = midday_time_zone(RUN_STARTED)
    os.environ["TIME_ZONE"] = zone
    override_settings(TIME_ZONE=zone).enable()


def pytest_sessionfinish(session, exitstatus):
    """With FAIL_ON_SKIP=1 (CI), a skipped test fails the run: a missing service must not pass unnoticed."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("FAIL_ON_SKIP") == "1" and skipped and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write_line(f"FAIL_ON_SKIP: {len(skipped)} test(s) were skipped", red=True)


@pytest.fixture(autouse=True)
def fresh_cache():
    """The cache holds API throttle and refusal counters: one test's never reach the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def kiosk_rate_limits_lifted(request, settings):
    """Most tests drive many visits through one test kiosk's key from one address, and send recorded speech
    faster than real time; the kiosk rate limits have their own tests (marked `rate_limits`), which keep them."""
    if request.node.get_closest_marker("rate_limits") is None:
        settings.KIOSK_MAX_CONNECTIONS_PER_KIOSK = 10**6
        settings.KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE = 10**6
        settings.KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE = 10**6
        settings.KIOSK_RATE_MESSAGES_PER_SECOND = 10**6
        settings.KIOSK_RATE_AUDIO_REALTIME_FACTOR = 10.0**6


@pytest.fixture(autouse=True)
def isolated_workflow_state(settings, tmp_path):
    """Each test gets its own checkpoint file and no notification back-off. (Without a path, checkpoints go to the
    database file, whose write lock a test's open transaction holds; and no test's conversation may reach another.)"""
    from reception.workflow.checkpoint import reset_checkpointer

    settings.WORKFLOW_CHECKPOINT_PATH = str(tmp_path / "checkpoints.db")
    settings.NOTIFICATION_RETRY_DELAY_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    reset_checkpointer()
    yield
    reset_checkpointer()


@pytest.fixture(autouse=True)
def task_queue_emptied():
    """Tasks run at once (TASK_QUEUE_IMMEDIATE in pyproject.toml); one a test scheduled for later (a retry after
    its back-off) is dropped with the test instead of reaching the next."""
    from huey.contrib.djhuey import HUEY

    assert HUEY.immediate, "tests expect TASK_QUEUE_IMMEDIATE=true"
    yield
    HUEY.storage.flush_all()


@pytest.fixture
def demo_directory(db):
    """The demo staff directory and today's appointments."""
    return create_demo_data()


@pytest.fixture
def kiosk_and_key(db) -> tuple[Kiosk, str]:
    kiosk = Kiosk(name="Test lobby", location="2F lobby")
    key = kiosk.set_new_key()
    kiosk.save()
    return kiosk, key


@pytest.fixture
def reference_prices():
    """The price table re-seeded from its data migration (idempotent): a transactional test's flush removes
    migration data, and Realtime admission and the cost figures need prices."""
    importlib.import_module("metrics.migrations.0002_seed_prices").seed(apps, None)


@pytest.fixture
async def realtime_emulator() -> AsyncIterator[EmulatorServer]:
    """A started emulator on a free 127.0.0.1 port that accepts TEST_KEY, with a ScriptedBrain.

    Tests replace `server.brain`, `server.config` fields or call `server.set_faults(...)` as they need.
    On teardown the server stops and no asyncio task may be left running.
    """
    server = EmulatorServer(ScriptedBrain(), config=EmulatorConfig(accepted_keys=frozenset({TEST_KEY})))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await assert_no_leaked_tasks()


@pytest.fixture(autouse=True)
def background_work_ends_with_its_test(request):
    """Nothing a test started in the background reaches the next test.

    The metrics it queued are written, and the collector's writer thread stopped, while its database and its
    settings are still there: set up after them, this fixture is torn down before them. By then an async test's
    event loop is closed (it is set up after this fixture), which cancelled its tasks, the emergency watch
    included. The speech hint cached from its staff directory is dropped. A test that fails here left metrics
    that could not be written (e.g. a test without a database).
    """
    if "_django_db_helper" in request.fixturenames:  # a database requested as a fixture, not by the marker
        request.getfixturevalue("_django_db_helper")
    request.getfixturevalue("settings")
    yield
    names = sys.modules.get("reception.workflow.names")
    if names is not None:
        names._hint_cache.clear()  # the speech-recognition hint names the staff of this test's directory
    collector_module = sys.modules.get("metrics.collector")
    if collector_module is not None and not collector_module.collector.stop():
        pytest.fail(f"{collector_module.collector.pending} metrics records of this test were never written")
