"""The suite's local clock: the run's time zone is the whole-hour zone where it is midday when the run starts, so a
run never crosses local midnight (tests/conftest.py sets it)."""

from __future__ import annotations

from datetime import UTC, datetime

RUN_STARTED = datetime.now(UTC)


def midday_time_zone(now: datetime) -> str:
    """The whole-hour time zone whose local time at `now` is between 12:00 and 13:00 (an IANA "Etc/GMT" name,
    whose sign is the reverse of the offset's)."""
    offset = 12 - now.astimezone(UTC).hour  # from -11 to +12 hours
    return f"Etc/GMT{-offset:+d}"
