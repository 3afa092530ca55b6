"""`benchmarks/relay_capacity.py` steps several fleets up side by side, each until it passes the budget."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from benchmarks import relay_capacity

FIGURES = ("relay", "relay_system", "server_side", "kiosks", "standin", "databases", "machine")


def test_each_count_runs_on_every_fleet_still_within_the_budget_in_alternating_order(monkeypatch):
    holds_up_to = {"one worker": 50, "two workers": 60}
    phases = []

    async def phase(target, keys, options, standin):
        phases.append((target, len(keys)))
        return {
            "added_p95_ms": 35.0 if len(keys) > holds_up_to[target] else 5.0,
            "errors": {},
            "sessions_on_legacy": {},
            "session_opening_wait_ms": {"count": 0},
            "streaming": {**{f"{key}_cpu_percent": 10.0 for key in FIGURES}, "messages_per_wakeup": 2.0},
        }

    monkeypatch.setattr(relay_capacity, "phase", phase)
    targets = {name: name for name in holds_up_to}
    options = SimpleNamespace(steps=[40, 50, 60, 70, 80], budget_ms=20.0)
    result = asyncio.run(relay_capacity.step_up(targets, [f"key-{n}" for n in range(80)], options, None))

    assert {name: fleet["most_sessions_within_budget"] for name, fleet in result.items()} == holds_up_to
    assert phases == [
        ("one worker", 40),
        ("two workers", 40),
        ("two workers", 50),
        ("one worker", 50),
        ("one worker", 60),  # over the budget: one worker steps no further
        ("two workers", 60),
        ("two workers", 70),  # over: the run ends before 80
    ]
    assert [len(fleet["steps"]) for fleet in result.values()] == [3, 4]


def test_a_fleet_that_holds_not_even_the_first_count_holds_none(monkeypatch):
    async def phase(target, keys, options, standin):
        return {
            "added_p95_ms": 5.0,
            "errors": {"TimeoutError": 1},
            "sessions_on_legacy": {},
            "streaming": None,
            "session_opening_wait_ms": {"count": 0},
            **{f"{key}_cpu_percent": 0.0 for key in FIGURES},
            "messages_per_wakeup": 0.0,
        }

    monkeypatch.setattr(relay_capacity, "phase", phase)
    options = SimpleNamespace(steps=[10, 20], budget_ms=20.0)
    result = asyncio.run(relay_capacity.step_up({"ours": object()}, ["key"] * 20, options, None))
    assert result["ours"]["most_sessions_within_budget"] is None and len(result["ours"]["steps"]) == 1
