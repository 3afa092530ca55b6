"""Counts of refused kiosk frames and connections, by limit, in the shared cache (Redis with REDIS_URL).

Every server process adds to the same counts, so any process answers a Prometheus scrape with the totals.
"""

from __future__ import annotations

from django.core.cache import cache

LIMITS = ("messages", "audio", "kiosk_connects", "address_connects", "flood_closed", "flooding")
_KEY = "reception:rate-limited:{}"


def count_refusal(limit: str, amount: int = 1) -> None:
    """`amount` refusals of `limit` (blocking: a cache round trip). `flood_closed` counts sockets closed with 4429,
    `flooding` new connections refused at the handshake while their kiosk is closed for flooding."""
    key = _KEY.format(limit)
    cache.add(key, 0, timeout=None)
    try:
        cache.incr(key, amount)
    except ValueError:  # evicted between add and incr
        cache.add(key, amount, timeout=None)


def refusal_counts() -> dict[str, int]:
    """Refusals so far, by limit."""
    found = cache.get_many([_KEY.format(limit) for limit in LIMITS])
    return {limit: int(found.get(_KEY.format(limit), 0)) for limit in LIMITS}
