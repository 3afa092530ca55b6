"""The suite's local clock reads midday (tests/support/clock.py, set by tests/conftest.py), in this process and in
the commands it starts, so a run never crosses local midnight and today's appointments stay today's."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from tests.support.clock import RUN_STARTED, midday_time_zone
from tests.support.live_server import REPO, database_env


@pytest.mark.parametrize("utc_hour", range(24))
def test_the_zone_chosen_reads_midday_at_any_hour(utc_hour):
    for minute in (0, 59):
        now = datetime(2026, 12, 1, utc_hour, minute, tzinfo=UTC)
        local = now.astimezone(ZoneInfo(midday_time_zone(now)))
        assert local.hour == 12 and local.date() == (now + timedelta(hours=12 - utc_hour)).date()


def test_this_run_and_the_commands_it_starts_are_hours_from_midnight(tmp_path):
    zone = midday_time_zone(RUN_STARTED)
    assert timezone.get_default_timezone().key == zone
    assert 12 <= timezone.localtime().hour <= 20  # the run started between 12:00 and 13:00 local
    shown = "from django.utils import timezone; print(timezone.get_default_timezone().key, timezone.localtime().hour)"
    printed = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", shown],
        cwd=REPO,
        env=database_env(f"sqlite:///{tmp_path / 'unused.sqlite3'}"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    command_zone, command_hour = printed.stdout.split()[-2:]
    assert command_zone == zone and 12 <= int(command_hour) <= 20
