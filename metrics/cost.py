"""Cost: exact USD per turn from the versioned price table, Realtime admission by reservation, projections.

The rolling hour's Realtime spend and the reservations are kept by the ledger (``metrics.ledger``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from .ledger import reserve_session_cost, reserved_unused, spend_last_hour
from .models import CostBucket, CostReservation, Mode, ModelPrice, SessionMetric, UnknownPrice
from .sources import sources
from .stats import percentile

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
SIXTY = Decimal(60)
ESTIMATE_SAMPLE = timedelta(hours=24)  # sessions whose cost sets the reservation estimate
ESTIMATE_MIN_SESSIONS = 10  # below this many, the configured floor is the estimate
BURN_WINDOW = timedelta(minutes=15)  # the burn rate behind the projections


def _int(mapping: Mapping[str, Any] | None, key: str) -> int:
    return int((mapping or {}).get(key) or 0)


@dataclass(frozen=True)
class RealtimeUsage:
    """The token counts of one ``response.done`` usage object, with cached tokens split by kind."""

    text_input: int = 0
    audio_input: int = 0
    cached_text_input: int = 0
    cached_audio_input: int = 0
    text_output: int = 0
    audio_output: int = 0

    @classmethod
    def from_usage(cls, usage: Mapping[str, Any]) -> RealtimeUsage:
        """Read ``usage``; missing details are handled conservatively.

        - ``cached_tokens`` without ``cached_tokens_details`` (old payloads): counted as text first.
        - ``input_tokens``/``output_tokens`` without details: all counted as audio (the dearer kind).
        """
        inp, out = usage.get("input_token_details"), usage.get("output_token_details")
        if inp:
            text_in, audio_in = _int(inp, "text_tokens"), _int(inp, "audio_tokens")
        else:
            text_in, audio_in = 0, _int(usage, "input_tokens")
        details = (inp or {}).get("cached_tokens_details")
        if details:
            cached_text, cached_audio = _int(details, "text_tokens"), _int(details, "audio_tokens")
        else:
            cached = _int(inp, "cached_tokens")
            cached_text = min(cached, text_in)
            cached_audio = min(cached - cached_text, audio_in)
        if out:
            text_out, audio_out = _int(out, "text_tokens"), _int(out, "audio_tokens")
        else:
            text_out, audio_out = 0, _int(usage, "output_tokens")
        if cached_text > text_in or cached_audio > audio_in:
            raise ValueError(f"More cached than input tokens in {dict(usage)!r}.")
        return cls(text_in, audio_in, cached_text, cached_audio, text_out, audio_out)

    def cost(self, price: ModelPrice) -> Decimal:
        """Exact USD (no rounding): uncached and cached input at their prices, plus output (all per 1M)."""
        micro = (
            (self.text_input - self.cached_text_input) * price.text_input
            + self.cached_text_input * price.cached_text_input
            + (self.audio_input - self.cached_audio_input) * price.audio_input
            + self.cached_audio_input * price.cached_audio_input
            + self.text_output * price.text_output
            + self.audio_output * price.audio_output
        )
        return micro / MILLION


def price_for(model: str, at: datetime | None = None) -> ModelPrice:
    """The price version of ``model`` in force at ``at`` (now by default); raises UnknownPrice."""
    return ModelPrice.objects.effective(model, at or timezone.now())


def cost_of_realtime_usage(
    model: str, usage: Mapping[str, Any], *, at: datetime | None = None
) -> tuple[Decimal, ModelPrice]:
    """USD of one Realtime ``response.done`` ``usage`` object at ``model``'s prices in force at ``at``, and that
    price version (a turn's metric row keeps it)."""
    price = price_for(model, at)
    return RealtimeUsage.from_usage(usage).cost(price), price


def cost_of_legacy_usage(usage: Mapping[str, Any], *, at: datetime | None = None) -> Decimal:
    """USD of one Legacy turn; a stage whose model is absent ran on a local engine and costs nothing.

    Keys: ``stt_model`` + ``audio_input_seconds`` (per minute); ``chat_model`` + ``text_input_tokens``,
    ``cached_text_input_tokens``, ``text_output_tokens`` (per 1M); ``tts_model`` + ``audio_output_seconds``
    (per minute) + ``tts_input_tokens`` (per 1M text input).
    """
    at = at or timezone.now()
    total = Decimal(0)
    if usage.get("stt_model"):
        stt = price_for(usage["stt_model"], at)
        total += Decimal(str(usage.get("audio_input_seconds") or 0)) / SIXTY * stt.audio_input_per_minute
    if usage.get("chat_model"):
        chat = price_for(usage["chat_model"], at)
        cached = _int(usage, "cached_text_input_tokens")
        total += (
            (_int(usage, "text_input_tokens") - cached) * chat.text_input
            + cached * chat.cached_text_input
            + _int(usage, "text_output_tokens") * chat.text_output
        ) / MILLION
    if usage.get("tts_model"):
        tts = price_for(usage["tts_model"], at)
        total += Decimal(str(usage.get("audio_output_seconds") or 0)) / SIXTY * tts.audio_output_per_minute
        total += _int(usage, "tts_input_tokens") * tts.text_input / MILLION
    return total


def cost_limit_per_hour() -> Decimal:
    """The effective hourly Realtime limit (the rollout's admin override, else REALTIME_COST_LIMIT_PER_HOUR)."""
    return Decimal(str(sources.cost_limit()))


def estimate_session_cost(*, now: datetime | None = None) -> Decimal:
    """What to reserve for a new Realtime session: the P90 cost of the last day's Realtime sessions
    (nearest rank), never below REALTIME_SESSION_COST_ESTIMATE."""
    now = now or timezone.now()
    floor = Decimal(str(settings.REALTIME_SESSION_COST_ESTIMATE))
    costs = list(
        SessionMetric.objects.filter(mode=Mode.REALTIME, ended_at__gt=now - ESTIMATE_SAMPLE).values_list(
            "cost_usd", flat=True
        )
    )
    if len(costs) < ESTIMATE_MIN_SESSIONS:
        return floor
    return max(floor, Decimal(str(percentile([float(c) for c in costs], 90))))


@dataclass(frozen=True)
class Admission:
    """The answer to "may this session use Realtime, cost-wise?"; reason: reserved, cost_limit, price_unknown,
    state_unavailable."""

    admitted: bool
    reason: str
    estimate_usd: Decimal = Decimal(0)
    limit_usd: Decimal = Decimal(0)


def admit_realtime_session(
    session_id: str, *, model: str | None = None, now: datetime | None = None, hold: bool = True
) -> Admission:
    """Call once when a session is routed to Realtime; go Legacy unless ``admitted``. Never raises.

    Fails closed: an unpriced model or an unreadable database refuses Realtime for this session only.
    ``hold=False`` answers without reserving anything (the admin's simulation).
    """
    model = model or settings.REALTIME_MODEL
    now = now or timezone.now()
    try:
        price_for(model, now)
    except UnknownPrice:
        logger.error("no price for Realtime model %s; session %s goes Legacy", model, session_id)
        return Admission(False, "price_unknown")
    except Exception:
        logger.exception("price table unreadable; session %s goes Legacy", session_id)
        return Admission(False, "state_unavailable")
    try:
        limit, estimate = cost_limit_per_hour(), estimate_session_cost(now=now)
        ttl = timedelta(seconds=settings.REALTIME_RESERVATION_TTL_SECONDS)
        admitted = reserve_session_cost(session_id, estimate, limit, ttl=ttl, now=now, hold=hold)
    except Exception:
        logger.exception("cost reservation failed; session %s goes Legacy", session_id)
        return Admission(False, "state_unavailable")
    if not admitted:
        logger.info("session %s: Realtime refused, the hour's budget %s USD is committed", session_id, limit)
    return Admission(admitted, "reserved" if admitted else "cost_limit", estimate, limit)


@dataclass(frozen=True)
class CostStatus:
    """The rolling hour's Realtime money, as the guard and the admission see it."""

    spend_last_hour: Decimal
    reserved: Decimal
    open_reservations: int
    limit: Decimal
    burn_rate_per_minute: Decimal
    projected_next_hour: Decimal
    projected_this_hour: Decimal

    @property
    def committed(self) -> Decimal:
        return self.spend_last_hour + self.reserved

    @property
    def remaining(self) -> Decimal:
        return max(self.limit - self.committed, Decimal(0))


def cost_status(*, now: datetime | None = None) -> CostStatus:
    """Spend, reservations, limit and two projections at the last 15 minutes' burn rate:
    the next 60 minutes (rate × 60) and this clock hour (spent since its start + rate × minutes left)."""
    now = now or timezone.now()
    minute = now.replace(second=0, microsecond=0)
    recent = CostBucket.objects.filter(minute__gt=minute - BURN_WINDOW)
    burn = sum(recent.values_list("usd", flat=True), Decimal(0)) / Decimal(BURN_WINDOW.seconds // 60)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    this_hour = sum(CostBucket.objects.filter(minute__gte=hour_start).values_list("usd", flat=True), Decimal(0))
    minutes_left = Decimal(str((hour_start + timedelta(hours=1) - now).total_seconds())) / SIXTY
    open_rows = CostReservation.objects.filter(settled_at__isnull=True, expires_at__gt=now).count()
    return CostStatus(
        spend_last_hour=spend_last_hour(now=now),
        reserved=reserved_unused(now=now),
        open_reservations=open_rows,
        limit=cost_limit_per_hour(),
        burn_rate_per_minute=burn,
        projected_next_hour=burn * SIXTY,
        projected_this_hour=this_hour + burn * minutes_left,
    )
