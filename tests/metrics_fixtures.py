"""Fixtures of the metrics tests: the reference prices (a transactional test's flush removes migration data)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps


@pytest.fixture(autouse=True)
def reference_prices():
    """Re-seed the price table from its data migration (idempotent)."""
    importlib.import_module("metrics.migrations.0002_seed_prices").seed(apps, None)
