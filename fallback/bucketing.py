"""Sticky percentage bucketing (stdlib only).

A session's bucket is the salted SHA-256 of its id mapped to basis points 0..9999. It is in the rollout
iff ``bucket < percent_bp`` (strict), so 0 % admits nobody, 100 % everybody, and raising the percentage
only ever adds sessions: the bucket never depends on the percentage.
"""

from __future__ import annotations

import hashlib

BASIS_POINTS = 10000


def bucket_bp(salt: str, session_id: str) -> int:
    """The session's bucket, 0..9999, the same on every process for the same salt."""
    digest = hashlib.sha256(f"{salt}:{session_id}".encode()).hexdigest()
    return int(digest[:15], 16) % BASIS_POINTS


def percent_to_bp(percent: float) -> int:
    """A 0..100 percentage (decimals allowed) in basis points; anything else is refused."""
    if not 0 <= percent <= 100:  # also refuses NaN
        raise ValueError(f"The rollout percentage must be between 0 and 100, not {percent!r}.")
    return round(percent * 100)
