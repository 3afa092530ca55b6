"""The Realtime cost ledger: spend per minute, and the holds of sessions in progress against the hourly limit.

The rolling hour's Realtime spend has one source of truth, the per-minute CostBucket rows; what admission
compares to the limit is that spend plus the unused part of open reservations (``committed_last_hour``).
Every function is synchronous (ORM); async callers wrap it in ``core.blocking.run_blocking``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from .models import CostBucket, CostReservation

ADMISSION_LOCK_KEY = 0x4C454447  # the PostgreSQL advisory lock that serialises admissions ("LEDG")


def spend_last_hour(*, now: datetime | None = None) -> Decimal:
    """Realtime spend (USD) in the rolling hour ending now."""
    now = now or timezone.now()
    total = CostBucket.objects.filter(minute__gt=now - timedelta(hours=1)).aggregate(total=Sum("usd"))["total"]
    return total or Decimal(0)


def add_spend(usd: float | Decimal, *, now: datetime | None = None, session_id: str | None = None) -> Decimal:
    """Add Realtime spend to the current minute (an F() increment); returns the amount added.

    With ``session_id``, the same transaction counts the spend against that session's open reservation,
    so the rolling hour's committed total (spend + unused reservations) does not count it twice.
    """
    amount = Decimal(str(usd))
    if amount < 0:
        raise ValueError(f"A cost cannot be negative ({usd} USD).")
    now = now or timezone.now()
    minute = now.replace(second=0, microsecond=0)
    with transaction.atomic():
        if not CostBucket.objects.filter(minute=minute).update(usd=F("usd") + amount):
            try:
                with transaction.atomic():
                    CostBucket.objects.create(minute=minute, usd=amount)
            except IntegrityError:  # another process created this minute's bucket first
                CostBucket.objects.filter(minute=minute).update(usd=F("usd") + amount)
        if session_id:
            CostReservation.objects.filter(session_id=session_id, settled_at__isnull=True).update(
                consumed_usd=F("consumed_usd") + amount
            )
    return amount


def reserved_unused(*, now: datetime | None = None) -> Decimal:
    """The unused part of every open (unsettled, unexpired) reservation, USD."""
    now = now or timezone.now()
    rows = CostReservation.objects.filter(settled_at__isnull=True, expires_at__gt=now)
    return sum((max(usd - used, Decimal(0)) for usd, used in rows.values_list("usd", "consumed_usd")), Decimal(0))


def committed_last_hour(*, now: datetime | None = None) -> Decimal:
    """Spend in the rolling hour plus what open reservations still hold: what admission compares to the limit."""
    now = now or timezone.now()
    return spend_last_hour(now=now) + reserved_unused(now=now)


def _lock_admissions() -> None:
    """Serialise admissions in every process until the transaction ends: a transaction-level advisory lock on
    PostgreSQL; on SQLite the IMMEDIATE transaction already holds the database's write lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADMISSION_LOCK_KEY])


def reserve_session_cost(
    session_id: str,
    estimate_usd: float | Decimal,
    limit_usd: float | Decimal,
    *,
    ttl: timedelta,
    now: datetime | None = None,
    hold: bool = True,
) -> bool:
    """Hold ``estimate_usd`` for a Realtime session if spend + open reservations + estimate <= limit.

    ``hold=False`` only answers whether it would be admitted (nothing is written). Admissions are serialised
    by one lock, so concurrent sessions in any number of processes cannot all pass the same check. A session
    already holding an open reservation is admitted again without a second hold. The hold lapses at
    ``now + ttl`` if nobody settles it.
    """
    amount = Decimal(str(estimate_usd))
    if amount < 0:
        raise ValueError(f"A cost estimate cannot be negative ({estimate_usd} USD).")
    now = now or timezone.now()
    with transaction.atomic():
        _lock_admissions()
        held = CostReservation.objects.filter(session_id=session_id).first()
        if held is not None and held.settled_at is None and held.expires_at > now:
            return True
        if committed_last_hour(now=now) + amount > Decimal(str(limit_usd)):
            return False
        if not hold:
            return True
        CostReservation.objects.update_or_create(
            session_id=session_id,
            defaults={"usd": amount, "consumed_usd": 0, "created_at": now, "expires_at": now + ttl, "settled_at": None},
        )
    return True


def settle_session_cost(session_id: str, *, now: datetime | None = None) -> Decimal:
    """Release a session's reservation (its turns' cost is already in the spend); returns the unused USD released."""
    now = now or timezone.now()
    with transaction.atomic():
        row = CostReservation.objects.filter(session_id=session_id, settled_at__isnull=True).first()
        if row is None or not CostReservation.objects.filter(pk=row.pk, settled_at__isnull=True).update(settled_at=now):
            return Decimal(0)  # never reserved, or settled already (perhaps by another process)
    return max(row.usd - row.consumed_usd, Decimal(0)) if row.expires_at > now else Decimal(0)
