"""Fixtures of the fallback tests."""

from __future__ import annotations

import pytest

from tests.fallback.routing_model import TTL


@pytest.fixture
def routing_settings(settings):
    """The environment's defaults, whatever the machine's environment holds."""
    settings.FEATURE_REALTIME_MODE_ENABLED = False
    settings.REALTIME_DISABLED_BY_ENVIRONMENT = False
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 0.0
    settings.FEATURE_REALTIME_ALLOWLIST_SESSIONS = []
    settings.REALTIME_COST_LIMIT_PER_HOUR = 50.0
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    settings.REALTIME_RESERVATION_TTL_SECONDS = int(TTL.total_seconds())
    return settings
