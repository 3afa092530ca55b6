"""Rate limits of the kiosk socket, on a counter shared by every server process (the `limits` library).

With `REDIS_URL` the counters live in Redis, so every process counts against the same budget; without it
the deployment is one process (the channel layer is in-process too) and the counters live in its memory.
Per kiosk: frames per second, and audio no faster than `KIOSK_RATE_AUDIO_REALTIME_FACTOR` x real time
averaged over `KIOSK_RATE_AUDIO_BURST_SECONDS` (PCM16 24 kHz mono is 48,000 bytes/s, so a short burst
passes); new connections per kiosk and per client address. A refused frame gets `error` `rate_limited`
and the socket stays open; `KIOSK_RATE_FLOOD_REFUSALS` refusals within `KIOSK_RATE_FLOOD_WINDOW_SECONDS`
close it with 4429, and for `KIOSK_RATE_FLOOD_WINDOW_SECONDS` after that the kiosk's new connections are
refused at the handshake (HTTP 403): an open socket would let a flooder fill the server with frames it must
still read, even after the close.
Every refusal is counted (`metrics.refusals`, exported to Prometheus). Frames and audio are taken from the
shared counter 200 ms of real-time streaming at a time (`SharedBudget`), not one round trip per frame.

Concurrent connections per kiosk: the newest win. Each connection announces itself to the kiosk's group
on the channel layer; a connection that sees `KIOSK_MAX_CONNECTIONS_PER_KIOSK` newer live ones closes
with 4409. So a kiosk that reconnects while its old socket is not yet closed is never refused, and a
crashed process can never lock a kiosk out.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from metrics.refusals import count_refusal

from .protocol import ProtocolError

CLOSE_FLOODING = 4429
CLOSE_REPLACED = 4409
PCM16_BYTES_PER_SECOND = 48_000  # 24 kHz mono
# What a kiosk streaming at real-time pace spends in 200 ms: taken from the shared counter at a time (SharedBudget).
BULK_FRAMES = 10  # 20 ms frames
BULK_AUDIO_BYTES = PCM16_BYTES_PER_SECOND // 5

STALL_SECONDS = 0.25  # a connection that could not read for longer finds the frames of that time queued
_storages: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Storage] = weakref.WeakKeyDictionary()
_loop_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWatch] = weakref.WeakKeyDictionary()


def shared_storage() -> Storage:
    """The counters' storage for the running event loop: Redis with REDIS_URL, else this process's memory.

    One per loop, because an asyncio Redis connection belongs to the loop that opened it.
    """
    loop = asyncio.get_running_loop()
    storage = _storages.get(loop)
    if storage is None:
        if settings.REDIS_URL:
            storage = storage_from_string(f"async+{settings.REDIS_URL}", implementation="redispy")
        else:
            storage = SweptMemoryStorage()
        _storages[loop] = storage
    return storage


class SweptMemoryStorage(MemoryStorage):
    """`limits`' in-process counters, with their expired keys swept at most once per SWEEP_SECONDS.

    Its own sweep starts after every hit and goes over every key, so with a hit per kiosk every 200 ms its cost
    grew with the square of the kiosks. Only memory waits for the sweep: a read drops an expired key itself.
    """

    SWEEP_SECONDS = 1.0
    _swept_at = float("-inf")

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the base class's private hook, by its mangled name
        now = time.monotonic()
        if now - self._swept_at >= self.SWEEP_SECONDS:
            self._swept_at = now
            await MemoryStorage._MemoryStorage__schedule_expiry(self)


class LoopWatch:
    """The stalls of one event loop: `stalls` counts the times it stood still for more than STALL_SECONDS, and
    `stalled_for` is how long the latest lasted. A timer keeps `ticked` fresh; every read checks it too, so the
    first frame read after a stall sees it whichever of the two runs first."""

    TICK = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ticked = time.monotonic()
        self.stalls = 0
        self.stalled_for = 0.0
        loop.call_later(self.TICK, self._tick)

    def _tick(self) -> None:
        self.check()
        asyncio.get_running_loop().call_later(self.TICK, self._tick)  # no reference to the loop: it can go

    def check(self) -> None:
        now = time.monotonic()
        if now - self.ticked > self.TICK + STALL_SECONDS:
            self.stalls += 1
            self.stalled_for = now - self.ticked
        self.ticked = now


def loop_watch() -> LoopWatch:
    """The watch of the running event loop (one per loop, started with the first kiosk connection)."""
    loop = asyncio.get_running_loop()
    watch = _loop_watches.get(loop)
    if watch is None:
        watch = _loop_watches[loop] = LoopWatch(loop)
    return watch


class RateLimited(ProtocolError):
    """A frame or connection over one of the kiosk's limits."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__("rate_limited", message)
        self.limit = limit


class StillFlooding(RateLimited):
    """A new connection of a kiosk whose socket was closed for flooding, within the flood window."""

    def __init__(self) -> None:
        super().__init__("flooding", "This kiosk was closed for flooding; try again shortly.")


@dataclass(frozen=True)
class Limits:
    """The limits of the settings, read when a connection opens."""

    messages: RateLimitItem
    audio_bytes: RateLimitItem
    flood: RateLimitItem
    flood_lockout: RateLimitItem  # one 4429 per window; until it has passed, the kiosk's connections are refused
    kiosk_connects: RateLimitItem
    address_connects: RateLimitItem

    @classmethod
    def from_settings(cls) -> Limits:
        burst = max(1, settings.KIOSK_RATE_AUDIO_BURST_SECONDS)
        audio_per_burst = round(PCM16_BYTES_PER_SECOND * settings.KIOSK_RATE_AUDIO_REALTIME_FACTOR * burst)
        return cls(
            messages=RateLimitItemPerSecond(settings.KIOSK_RATE_MESSAGES_PER_SECOND),
            audio_bytes=RateLimitItemPerSecond(audio_per_burst, burst),
            flood=RateLimitItemPerSecond(settings.KIOSK_RATE_FLOOD_REFUSALS, settings.KIOSK_RATE_FLOOD_WINDOW_SECONDS),
            flood_lockout=RateLimitItemPerSecond(1, settings.KIOSK_RATE_FLOOD_WINDOW_SECONDS),
            kiosk_connects=RateLimitItemPerMinute(settings.KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE),
            address_connects=RateLimitItemPerMinute(settings.KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE),
        )


class SharedBudget:
    """One kiosk's budget on the shared counter, taken ahead in bulks and spent here.

    Over Redis a hit is a round trip that costs this process ~0.1 ms of CPU; two per frame took half a core at 50
    sessions. A bulk is `most_ahead` (what a kiosk streaming at real-time pace spends in 200 ms), and never more
    than a tenth of the limit, so a connection holds little unspent when it closes and the limit holds to that;
    once a bulk is refused (near the limit) each frame is hit on its own, exactly."""

    def __init__(
        self, limiter: SlidingWindowCounterRateLimiter, item: RateLimitItem, namespace: str, most_ahead: int
    ) -> None:
        self.limiter, self.item, self.namespace = limiter, item, namespace
        self.bulk = max(1, min(most_ahead, item.amount // 10))
        self.unspent = 0

    async def spend(self, key: str, cost: int = 1) -> bool:
        """Whether `cost` more fits in the budget (and is spent)."""
        if cost <= self.unspent:
            self.unspent -= cost
            return True
        need = cost - self.unspent
        if need < self.bulk and await self.limiter.hit(self.item, self.namespace, key, cost=self.bulk):
            self.unspent += self.bulk - cost
            return True
        if await self.limiter.hit(self.item, self.namespace, key, cost=need):
            self.unspent = 0
            return True
        return False


def kiosk_identity(kiosk) -> str:
    """The kiosk's counter key: its id and a piece of its key's hash (a new key starts a fresh budget)."""
    return f"{kiosk.pk}-{kiosk.key_hash[:16]}"


class KioskRateLimits:
    """The limits of one kiosk connection. `storage` defaults to the shared one."""

    def __init__(self, storage: Storage | None = None, limits: Limits | None = None) -> None:
        self.limits = limits or Limits.from_settings()
        self.loop_watch = loop_watch()
        self._stalls_seen = self.loop_watch.stalls
        storage = storage or shared_storage()
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.frames = SharedBudget(self.limiter, self.limits.messages, "kiosk-messages", BULK_FRAMES)
        self.audio_budget = SharedBudget(self.limiter, self.limits.audio_bytes, "kiosk-audio", BULK_AUDIO_BYTES)
        self.lockout = MovingWindowRateLimiter(storage)  # exact: from the 4429 on, for the whole window
        self.kiosk_key = ""
        self._uncounted: Counter[str] = Counter()
        self._counting: asyncio.Task | None = None
        self._backlog = {"frames": 0, "audio": 0}  # admitted without a hit (see allow_backlog)
        self._in_backlog = False  # the frame being read is one of them

    async def address_open(self, address: str) -> None:
        """Before authentication: refuse `address` once it used up its budget of new connections (RateLimited)."""
        if not await self.limiter.test(self.limits.address_connects, "kiosk-address", address):
            raise RateLimited("address_connects", "Too many new connections from this address; try again shortly.")

    async def address_connected(self, address: str) -> None:
        """Spend one of `address`'s new connections: an unknown key or an admitted kiosk does; a kiosk locked out
        for flooding does not, so it cannot use up the budget of the other kiosks behind the same address."""
        await self.limiter.hit(self.limits.address_connects, "kiosk-address", address)

    async def kiosk_connect(self, kiosk) -> None:
        """A new connection of an authenticated kiosk; raises StillFlooding (not counted against the kiosk's
        connection budget) or RateLimited."""
        self.kiosk_key = kiosk_identity(kiosk)
        if not await self.lockout.test(self.limits.flood_lockout, "kiosk-flood-closed", self.kiosk_key):
            raise StillFlooding()
        if not await self.limiter.hit(self.limits.kiosk_connects, "kiosk-connects", self.kiosk_key):
            raise RateLimited("kiosk_connects", "This kiosk reconnects too often; try again in a minute.")

    def stalled(self, seconds: float) -> None:
        """This connection could read nothing for `seconds` (a slow handler, such as a session that opens) while
        the kiosk streamed on: what the limits allow in that time is admitted next without a hit. The frames of
        that time wait in the server's queue or, since uvicorn stops reading a socket while its application is
        busy, in the socket's buffers; read in one burst, they would otherwise be refused as a flood (and the
        visitor's words with them). Over time a kiosk still gets no more than its limits."""
        if seconds > STALL_SECONDS:
            self._allow_backlog(seconds)

    def _allow_backlog(self, seconds: float) -> None:
        per_second = self.limits.messages.amount / self.limits.messages.get_expiry()
        audio_per_second = self.limits.audio_bytes.amount / self.limits.audio_bytes.get_expiry()
        # Two stalls read as one (the loop stood still while a session opened) overlap: the larger grant covers both.
        audio = self._backlog["audio"] if self._backlog["frames"] else 0
        frames = max(self._backlog["frames"], int(seconds * per_second))
        self._backlog = {"frames": frames, "audio": max(audio, int(seconds * audio_per_second))}

    async def message(self) -> None:
        """One frame from the kiosk; raises RateLimited."""
        self.loop_watch.check()
        if self.loop_watch.stalls != self._stalls_seen:  # the loop stood still since the last frame read
            self._stalls_seen = self.loop_watch.stalls
            self._allow_backlog(self.loop_watch.stalled_for)
        self._in_backlog = self._backlog["frames"] > 0
        if self._in_backlog:
            self._backlog["frames"] -= 1
            return
        if not await self.frames.spend(self.kiosk_key):
            raise RateLimited("messages", "Too many messages; slow down.")

    async def audio(self, nbytes: int) -> None:
        """`nbytes` of PCM16 from the kiosk; raises RateLimited when audio comes faster than allowed."""
        if self._in_backlog and nbytes <= self._backlog["audio"]:
            self._backlog["audio"] -= nbytes
            return
        if nbytes and not await self.audio_budget.spend(self.kiosk_key, nbytes):
            raise RateLimited("audio", "Audio is arriving faster than real time; this chunk was dropped.")

    async def refused(self, refusal: RateLimited) -> bool:
        """Count a refusal; True when the kiosk keeps flooding and its socket should be closed (4429).

        The counts reach the shared cache in the background, in one thread hop for all the refusals that
        arrive meanwhile (a flood would otherwise cost a hop per frame); `counted()` waits for them.
        """
        self.count(refusal.limit)
        flooding = not await self.limiter.hit(self.limits.flood, "kiosk-refusals", self.kiosk_key)
        if flooding:
            self.count("flood_closed")
            await self.lockout.hit(self.limits.flood_lockout, "kiosk-flood-closed", self.kiosk_key)
        return flooding

    def count(self, limit: str) -> None:
        """Count one refusal of `limit` in the shared counts, in the background."""
        self._uncounted[limit] += 1
        if self._counting is None or self._counting.done():
            self._counting = asyncio.create_task(self._count())

    async def _count(self) -> None:
        while self._uncounted:
            batch, self._uncounted = self._uncounted, Counter()
            await asyncio.to_thread(_count_refusals, batch)

    async def counted(self) -> None:
        """Until every refusal so far is in the shared counts."""
        if self._counting is not None:
            await self._counting


def _count_refusals(counts: Counter[str]) -> None:
    for limit, amount in counts.items():
        count_refusal(limit, amount)


def kiosk_group(kiosk) -> str:
    """The channel-layer group of one kiosk's connections."""
    return f"kiosk.{kiosk.pk}"


@dataclass
class ConnectionCap:
    """This connection's view of the kiosk's other connections: it must go when `cap` newer ones are live."""

    channel_name: str
    cap: int
    since: float = field(default_factory=time.time)
    newer: set[str] = field(default_factory=set)

    def announcement(self, kind: str) -> dict:
        return {"type": kind, "channel": self.channel_name, "since": self.since}

    def joined(self, event: dict) -> bool:
        """Another connection opened; True when this one must close."""
        if (event["since"], event["channel"]) > (self.since, self.channel_name):
            self.newer.add(event["channel"])
        return self.cap > 0 and len(self.newer) >= self.cap

    def left(self, event: dict) -> None:
        self.newer.discard(event["channel"])
