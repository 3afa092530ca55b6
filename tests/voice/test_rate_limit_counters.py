"""The kiosk rate limits' counters in one process without Redis: `limits`' memory storage, swept of expired keys
once a second."""

from __future__ import annotations

import asyncio

from limits.aio.storage import MemoryStorage

from voice.rate_limits import SweptMemoryStorage, shared_storage


async def test_the_in_process_counters_are_swept_once_a_second_not_after_every_hit(monkeypatch, settings):
    settings.REDIS_URL = ""
    assert isinstance(shared_storage(), SweptMemoryStorage)  # what one process without Redis counts on
    sweeps = 0
    sweep = MemoryStorage._MemoryStorage__expire_events

    async def counted_sweep(storage) -> None:
        nonlocal sweeps
        sweeps += 1
        await sweep(storage)

    monkeypatch.setattr(MemoryStorage, "_MemoryStorage__expire_events", counted_sweep)
    storage = SweptMemoryStorage()
    for n in range(200):  # 50 kiosks' hits
        await storage.incr(f"kiosk-{n % 50}", expiry=0.01)
        await asyncio.sleep(0)
    assert sweeps == 1
    await asyncio.sleep(0.02)
    assert await storage.get("kiosk-1") == 0  # an expired count reads as nothing before any sweep
    storage._swept_at -= storage.SWEEP_SECONDS  # a second later, the next hit sweeps the expired keys away
    await storage.incr("kiosk-new", expiry=10)
    await asyncio.sleep(0.01)
    assert sweeps == 2 and set(storage.storage) == {"kiosk-new"}
