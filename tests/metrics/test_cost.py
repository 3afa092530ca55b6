"""Cost: exact prices per response.done, price versions, windows and percentiles, the hourly limit under load."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from fallback import guards
from metrics import ledger
from metrics.collector import TurnRecord, write_batch
from metrics.cost import (
    RealtimeUsage,
    admit_realtime_session,
    cost_of_legacy_usage,
    cost_of_realtime_usage,
    cost_status,
)
from metrics.ledger import settle_session_cost
from metrics.models import CostBucket, CostReservation, ModelPrice, TurnMetric, UnknownPrice
from metrics.stats import percentile, turn_stats
from tests.metrics import harness as metrics_harness

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_prices")]

# A response.done usage object, as the Realtime API sends it (GA shape).
USAGE_A = {
    "total_tokens": 1900,
    "input_tokens": 1500,
    "output_tokens": 400,
    "input_token_details": {
        "text_tokens": 1000,
        "audio_tokens": 500,
        "cached_tokens": 600,
        "cached_tokens_details": {"text_tokens": 512, "audio_tokens": 88},
    },
    "output_token_details": {"text_tokens": 100, "audio_tokens": 300},
}


def test_gpt_realtime_turn_costs_exactly_what_the_price_table_says():
    # gpt-realtime, USD per 1M: text in 4.00, cached 0.40, audio in 32.00, cached 0.40, text out 16.00, audio out 64.00
    # (1000 - 512) text × 4.00  =  1,952.0
    #  512 cached text × 0.40   =    204.8
    # (500 - 88) audio × 32.00  = 13,184.0
    #   88 cached audio × 0.40  =     35.2
    #  100 text out × 16.00     =  1,600.0
    #  300 audio out × 64.00    = 19,200.0
    #                    sum    = 36,176.0 / 1e6 = 0.036176 USD (3.6176 cents)
    cost = cost_of_realtime_usage("gpt-realtime", USAGE_A)[0]
    assert cost == Decimal("0.036176")
    assert cost.quantize(Decimal("0.01")) == Decimal("0.04")


def test_gpt_realtime_mini_long_context_turn():
    usage = {
        "input_tokens": 7200,
        "output_tokens": 1050,
        "input_token_details": {
            "text_tokens": 4200,
            "audio_tokens": 3000,
            "cached_tokens": 6144,
            "cached_tokens_details": {"text_tokens": 3584, "audio_tokens": 2560},
        },
        "output_token_details": {"text_tokens": 150, "audio_tokens": 900},
    }
    # gpt-realtime-mini: text in 0.60, cached 0.06, audio in 10.00, cached 0.30, text out 2.40, audio out 20.00
    # (4200 - 3584) × 0.60 =    369.6
    #  3584 × 0.06         =    215.04
    # (3000 - 2560) × 10   =  4,400.0
    #  2560 × 0.30         =    768.0
    #   150 × 2.40         =    360.0
    #   900 × 20.00        = 18,000.0
    #               sum    = 24,112.64 / 1e6 = 0.02411264 USD
    assert cost_of_realtime_usage("gpt-realtime-mini", usage)[0] == Decimal("0.02411264")


def test_cached_tokens_without_details_count_as_text_first():
    usage = {"input_token_details": {"text_tokens": 300, "audio_tokens": 200, "cached_tokens": 400}}
    # cached 400 = 300 text (all of it) + 100 audio
    # 0 × 4.00 + 300 × 0.40 + (200 - 100) × 32.00 + 100 × 0.40 = 120 + 3,200 + 40 = 3,360 / 1e6 = 0.00336 USD
    assert cost_of_realtime_usage("gpt-realtime", usage)[0] == Decimal("0.00336")


def test_dated_snapshot_uses_the_family_price_and_unknown_models_fail():
    assert cost_of_realtime_usage("gpt-realtime-2025-08-28", USAGE_A)[0] == Decimal("0.036176")
    with pytest.raises(UnknownPrice):
        cost_of_realtime_usage("gpt-unknown-model", USAGE_A)
    with pytest.raises(ValueError, match="cached"):
        RealtimeUsage.from_usage(
            {"input_token_details": {"text_tokens": 1, "cached_tokens_details": {"text_tokens": 2}}}
        )


def test_legacy_turn_cost_per_minute_and_per_token():
    usage = {
        "stt_model": "gpt-4o-mini-transcribe",
        "audio_input_seconds": 30,
        "chat_model": "gpt-4o-mini",
        "text_input_tokens": 2000,
        "cached_text_input_tokens": 500,
        "text_output_tokens": 100,
        "tts_model": "gpt-4o-mini-tts",
        "audio_output_seconds": 12,
        "tts_input_tokens": 40,
    }
    # STT: 30 s = 0.5 min × 0.003 USD/min                                      = 0.0015
    # chat: (1500 × 0.15 + 500 × 0.075 + 100 × 0.60) / 1e6 = 322.5 / 1e6       = 0.0003225
    # TTS: 12 s = 0.2 min × 0.015 USD/min = 0.003; 40 × 0.60 / 1e6 = 0.000024  = 0.003024
    #                                                                   total  = 0.0048465 USD
    assert cost_of_legacy_usage(usage) == Decimal("0.0048465")
    assert cost_of_legacy_usage({"audio_input_seconds": 30}) == 0  # local engines cost nothing


def _turn(session: str, at, **kw) -> TurnRecord:
    return TurnRecord(
        session, "realtime", "gpt-realtime", USAGE_A, 800.0, 500.0, 300.0, None, True, "", kw.pop("event", session), at
    )


def test_price_version_added_in_the_admin_leaves_old_turns_at_their_price(client):
    before = timezone.now() - timedelta(minutes=5)
    write_batch([_turn("old-turn", before)])
    admin = get_user_model().objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(admin)
    old = ModelPrice.objects.effective("gpt-realtime", timezone.now())
    url = reverse("admin:metrics_modelprice_change", args=[old.pk])
    form = {f.name: getattr(old, f.name) for f in ModelPrice._meta.fields if f.editable and f.name != "id"}
    form.update(audio_output="80.000000", note="price rise", effective_from_0="2020-01-01", effective_from_1="00:00:00")
    form.pop("effective_from")
    response = client.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    assert ModelPrice.objects.filter(model="gpt-realtime").count() == 2
    old.refresh_from_db()
    assert old.audio_output == Decimal("64")  # history untouched
    new = ModelPrice.objects.effective("gpt-realtime", timezone.now())
    assert new.pk != old.pk and new.audio_output == Decimal("80") and new.effective_from >= before
    write_batch([_turn("new-turn", timezone.now())])
    old_turn, new_turn = TurnMetric.objects.get(session_id="old-turn"), TurnMetric.objects.get(session_id="new-turn")
    assert old_turn.price_id == old.pk and old_turn.cost_usd == Decimal("0.036176")
    # the same usage at audio out 80.00: 36,176 + 300 × (80 - 64) = 40,976 / 1e6
    assert new_turn.price_id == new.pk and new_turn.cost_usd == Decimal("0.040976")
    from fallback.models import AuditEntry

    assert AuditEntry.objects.filter(action="price_version_added", actor="user:boss").count() == 1


# --- windows and percentiles against brute force ---------------------------------------------------------


@given(st.lists(st.floats(0, 10_000, allow_nan=False), min_size=1, max_size=200), st.integers(1, 100))
def test_percentile_is_nearest_rank(values, q):
    result = percentile(values, q)
    assert result in values
    at_or_below = sum(1 for v in values if v <= result)
    assert at_or_below >= q / 100 * len(values)  # enough of the sample at or below it
    assert sum(1 for v in values if v < result) < q / 100 * len(values)  # and it is the smallest such value
    assert result == sorted(values)[math.ceil(q * len(values) / 100) - 1]


@hyp_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 180), st.floats(50, 5000, allow_nan=False), st.booleans()), max_size=40))
def test_turn_window_matches_brute_force(turns):
    TurnMetric.objects.all().delete()
    now = timezone.now()
    for i, (minutes_ago, ttfa, ok) in enumerate(turns):
        TurnMetric.objects.create(
            event_id=f"e{i}",
            session_id="s",
            occurred_at=now - timedelta(minutes=minutes_ago),
            path="realtime",
            ttfa_ms=ttfa,
            ok=ok,
        )
    stats = turn_stats(now - timedelta(hours=1), now)["realtime"]
    inside = [(t, ok) for m, t, ok in turns if now - timedelta(minutes=m) > now - timedelta(hours=1)]
    assert stats["turns"] == len(inside)
    assert stats["failed_turns"] == sum(1 for _, ok in inside if not ok)
    values = sorted(t for t, _ in inside)
    expect_p95 = values[math.ceil(0.95 * len(values)) - 1] if values else None
    assert stats["ttfa_p95_ms"] == expect_p95


@hyp_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 120), st.integers(1, 10_000)), max_size=30))
def test_rolling_hour_spend_matches_brute_force(buckets):
    CostBucket.objects.all().delete()
    now = timezone.now().replace(second=30)
    for minutes_ago, micro in buckets:
        guards.record_cost(Decimal(micro) / 10**6, 1e9, now=now - timedelta(minutes=minutes_ago))
    minute = now.replace(second=0, microsecond=0)
    expected = sum(
        (Decimal(m) / 10**6 for ago, m in buckets if minute - timedelta(minutes=ago) > now - timedelta(hours=1)),
        Decimal(0),
    )
    assert ledger.spend_last_hour(now=now) == expected


# --- reservations: the hourly limit holds under concurrent admissions ------------------------------------


def test_reservation_counts_until_settled_and_turn_costs_replace_it(settings):
    settings.REALTIME_COST_LIMIT_PER_HOUR = 2.0
    settings.REALTIME_SESSION_COST_ESTIMATE = 0.5
    admitted = [admit_realtime_session(f"s{i}").admitted for i in range(6)]
    assert admitted == [True, True, True, True, False, False]  # 4 × 0.5 = 2.0 <= 2.0; a fifth would be 2.5
    assert admit_realtime_session("s0").admitted  # the same session again: no second hold
    guards.record_cost(Decimal("0.2"), 2.0, session_id="s0")  # a turn: spend +0.2, s0's hold -0.2
    assert cost_status().committed == Decimal("2.0")
    assert settle_session_cost("s0") == Decimal("0.3")
    assert settle_session_cost("s0") == 0  # settled once only
    assert ledger.committed_last_hour() == Decimal("1.7")
    assert not admit_realtime_session("s9").admitted  # 1.7 + 0.5 > 2.0
    ledger.settle_session_cost("s1")
    assert admit_realtime_session("s9").admitted


def test_a_dead_process_reservation_expires(settings):
    settings.REALTIME_COST_LIMIT_PER_HOUR = 1.0
    settings.REALTIME_SESSION_COST_ESTIMATE = 1.0
    settings.REALTIME_RESERVATION_TTL_SECONDS = 600
    now = timezone.now()
    assert admit_realtime_session("crashed", now=now).admitted  # its process then dies: never settled
    assert not admit_realtime_session("next", now=now + timedelta(minutes=9)).admitted
    later = now + timedelta(minutes=10, seconds=1)
    assert ledger.committed_last_hour(now=later) == 0
    assert admit_realtime_session("next", now=later).admitted
    assert CostReservation.objects.get(session_id="crashed").settled_at is None


def test_unknown_price_fails_closed_for_realtime_only(settings):
    settings.REALTIME_MODEL = "gpt-realtime-unpriced"
    admission = admit_realtime_session("x")
    assert not admission.admitted and admission.reason == "price_unknown"


LIMIT, ESTIMATE, SEEDED = "5.0", "0.5", "1.2"  # room for floor((5.0 - 1.2) / 0.5) = 7 sessions


def assert_limit_holds_under_20_concurrent_sessions(url: str) -> None:
    env = {"REALTIME_COST_LIMIT_PER_HOUR": LIMIT, "REALTIME_SESSION_COST_ESTIMATE": ESTIMATE}
    metrics_harness.run_workers(url, "seed_spend", 1, arg=SEEDED, env=env)
    results = metrics_harness.run_workers(url, "admit", 20, arg="burst", env=env)
    admitted = sum(r["admitted"] for r in results)
    (totals,) = metrics_harness.run_workers(url, "committed", 1, env=env)
    committed = Decimal(totals["committed"])
    print(f"\n{url.split(':')[0]}: 20 concurrent admissions -> {admitted} admitted, committed {committed} / {LIMIT}")
    assert admitted == 7  # every session that fits, and not one more
    assert committed == Decimal(SEEDED) + 7 * Decimal(ESTIMATE) <= Decimal(LIMIT)  # overshoot 0
    assert {r["reason"] for r in results} == {"reserved", "cost_limit"}


def test_hourly_limit_under_20_concurrent_sessions_on_sqlite(tmp_path):
    assert_limit_holds_under_20_concurrent_sessions(metrics_harness.sqlite_database(tmp_path))


@pytest.mark.postgres
def test_hourly_limit_under_20_concurrent_sessions_on_postgres():
    with metrics_harness.postgres_database() as url:
        assert_limit_holds_under_20_concurrent_sessions(url)
