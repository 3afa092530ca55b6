"""MetricsCollector: record turns and sessions without blocking the audio path.

``record_*`` only build a small record and put it on a thread-safe queue (no database, no await), so they
are safe to call from the event loop. One writer thread per process takes the queue in batches (every
``interval`` seconds or ``batch_size`` records) and writes each batch in one transaction: the turn and
session rows, the Realtime spend per minute (the ledger's CostBucket, also counted against the session's
reservation), the signals that feed the Realtime guards (spend, the batch's turn latencies, session end).
The alert check follows at most every ``alert_interval`` seconds (each check costs a few queries; under
load a batch comes every ``interval``). A failed batch is retried whole (the transaction rolled back, row
ids dedupe), so nothing is lost while the database is busy; ``flush()`` waits for everything queued so far
to be written and alert-checked (the writer then writes and checks at once), and ``atexit`` flushes at
shutdown.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from core import bookkeeping

from .alerts import evaluate_alerts
from .cost import RealtimeUsage, cost_of_legacy_usage, price_for
from .ledger import add_spend, settle_session_cost
from .models import Mode, ModelPrice, Outcome, Satisfaction, SessionMetric, TurnMetric, UnknownPrice
from .signals import realtime_session_ended, realtime_spend_recorded, realtime_turn_recorded
from .sources import sources

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY = 5.0


@dataclass
class TurnRecord:
    session_id: str
    path: str
    model: str
    usage: Mapping[str, Any]
    ttfa_ms: float | None
    upstream_ms: float | None
    server_ms: float | None
    cost_usd: Decimal | None
    ok: bool
    error: str
    event_id: str
    at: datetime = field(default_factory=timezone.now)
    spend_recorded: bool = False  # its Realtime spend is in the rolling hour already (fallback's record_realtime_spend)
    price: ModelPrice | None = None  # the price version it was priced at, if it was priced already


@dataclass
class SessionStart:
    session_id: str
    mode: str
    reason: str
    at: datetime = field(default_factory=timezone.now)


@dataclass(frozen=True)
class Conversation:
    """How a session's conversation went, as the voice layer read it from the workflow."""

    visitor_turns: int = 0
    reasks: int = 0
    corrections: int = 0
    seconds_to_complete: float | None = None


@dataclass
class SessionEnd:
    session_id: str
    outcome: str
    error: str
    conversation: Conversation = field(default_factory=Conversation)
    at: datetime = field(default_factory=timezone.now)


@dataclass
class Feedback:
    session_id: str
    rating: int


Record = TurnRecord | SessionStart | SessionEnd | Feedback
_HURRY = object()  # queued by flush() and stop(): the writer writes what it holds without waiting out `interval`


class MetricsCollector:
    """Queue + one writer thread; see the module docstring."""

    def __init__(
        self, *, batch_size: int = 500, interval: float = 0.25, alert_interval: float = 1.0, max_queue: int = 100_000
    ) -> None:
        self.batch_size = batch_size
        self.interval = interval
        self.alert_interval = alert_interval
        self._unchecked = 0  # records committed whose alert check is still due (the writer thread's own count)
        self._checked_at = 0.0
        self._queue: queue.Queue[Record] = queue.Queue(maxsize=max_queue)
        self._pending = 0  # records queued and not yet committed
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the recording API (cheap, never touches the database) ----------------------------------------------

    def record_turn(
        self,
        session_id: str,
        path: str,
        *,
        model: str = "",
        usage: Mapping[str, Any] | None = None,
        ttfa_ms: float | None = None,
        upstream_ms: float | None = None,
        server_ms: float | None = None,
        cost_usd: Decimal | None = None,
        ok: bool = True,
        error: str = "",
        response_id: str = "",
        spend_recorded: bool = False,
        price: ModelPrice | None = None,
    ) -> None:
        """One assistant turn. Realtime: ``usage`` is ``response.done.response.usage`` and ``model`` the session's
        model; Legacy: ``usage`` as cost.cost_of_legacy_usage reads it. ``cost_usd`` overrides the computed cost.
        ``response_id`` (or a generated id) makes the row idempotent. ``spend_recorded``: the cost is already in
        the rolling hour's spend (only the metric row is written), priced at ``price`` when given."""
        if path not in Mode.values:
            raise ValueError(f"Unknown voice path {path!r}; expected realtime or legacy.")
        self._put(
            TurnRecord(
                session_id[:64],
                path,
                model[:64],
                dict(usage or {}),
                ttfa_ms,
                upstream_ms,
                server_ms,
                cost_usd,
                ok,
                error[:200],
                (response_id or uuid.uuid4().hex)[:64],
                spend_recorded=spend_recorded,
                price=price,
            )
        )

    def record_session_start(self, session_id: str, mode: str, reason: str = "") -> None:
        """A session started on ``mode`` (realtime/legacy) for ``reason`` (the routing decision's reason)."""
        if mode not in Mode.values:
            raise ValueError(f"Unknown voice path {mode!r}; expected realtime or legacy.")
        self._put(SessionStart(session_id[:64], mode, reason[:64]))

    def record_session_end(
        self, session_id: str, outcome: str, *, error: str = "", conversation: Conversation | None = None
    ) -> None:
        """A session ended: completed, handed_off, abandoned or error, and how its conversation went. Turns, cost,
        paths and fallbacks are derived from what was recorded; a Realtime reservation is settled after the
        session's last turn."""
        if outcome not in Outcome.values:
            raise ValueError(f"Unknown outcome {outcome!r}; expected one of {', '.join(Outcome.values)}.")
        self._put(SessionEnd(session_id[:64], outcome, error[:200], conversation or Conversation()))

    def record_feedback(self, session_id: str, rating: int) -> None:
        """The visitor's one-tap rating of the session (1 unhappy, 2 neutral, 3 happy); the last one counts."""
        if rating not in Satisfaction.values:
            raise ValueError(f"Unknown rating {rating!r}; expected one of {Satisfaction.values}.")
        self._put(Feedback(session_id[:64], rating))

    def _put(self, record: Record) -> None:
        with self._cond:
            self._pending += 1
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            logger.error(
                "metrics queue full (%s records); a %s was dropped", self._queue.maxsize, type(record).__name__
            )
            return
        self._ensure_started()

    # --- lifecycle -------------------------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="metrics-writer", daemon=True)
                self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued before this call is committed and alert-checked; False on timeout."""
        if self._pending:
            self._ensure_started()
            self._hurry()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Flush, then end the writer thread; True if nothing was left unwritten."""
        flushed = self.flush(timeout)
        self._stop.set()
        self._hurry()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval * 4, 1.0))
        if not flushed:
            logger.error("metrics: %s records could not be written before shutdown", self._pending)
        return flushed

    def _hurry(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_HURRY)

    @property
    def pending(self) -> int:
        return self._pending

    # --- the writer thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not (self._stop.is_set() and self._queue.empty()):
                batch, hurried = self._take()
                if batch:
                    self._write_with_retry(batch)
                    self._unchecked += len(batch)
                if self._unchecked and (hurried or time.monotonic() - self._checked_at >= self.alert_interval):
                    self._check_alerts()
        finally:
            connection.close()

    def _take(self) -> tuple[list[Record], bool]:
        """The next batch, and whether flush() or stop() asked for it."""
        try:
            batch = [self._queue.get(timeout=self.interval)]
        except queue.Empty:
            return [], False
        deadline = time.monotonic() + self.interval
        while len(batch) < self.batch_size and batch[-1] is not _HURRY:
            left = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return [record for record in batch if record is not _HURRY], batch[-1] is _HURRY

    def _write_with_retry(self, batch: list[Record]) -> None:
        delay = 0.05
        while True:
            try:
                bookkeeping.call(write_batch, batch)
                break
            except Exception:
                logger.exception("metrics batch of %s records not written; retrying in %.2f s", len(batch), delay)
                connection.close()  # a broken connection is replaced on the next attempt
                time.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    def _check_alerts(self) -> None:
        """Check the alerts over what was committed (at most every ``alert_interval`` seconds, or when flushed)."""
        try:
            bookkeeping.call(evaluate_alerts)
        except Exception:  # an alert check must never stop the writer
            logger.exception("alert evaluation failed")
        self._checked_at = time.monotonic()
        # Counted as done after the alert check, so `flush()` also waits for the alerts these records raise.
        with self._cond:
            self._pending -= self._unchecked
            self._cond.notify_all()
        self._unchecked = 0


def _turn_row(record: TurnRecord) -> tuple[TurnMetric, Decimal | None]:
    """The metric row of one turn, and the spend it adds to the rolling hour (None: none, or recorded already)."""
    usage, price, cost = record.usage, None, record.cost_usd
    tokens = RealtimeUsage()
    try:
        if record.path == Mode.REALTIME:
            tokens = RealtimeUsage.from_usage(usage)
            if record.model:
                price = record.price or price_for(record.model, record.at)
                cost = tokens.cost(price) if cost is None else cost
        else:
            tokens = RealtimeUsage(
                text_input=int(usage.get("text_input_tokens") or 0),
                cached_text_input=int(usage.get("cached_text_input_tokens") or 0),
                text_output=int(usage.get("text_output_tokens") or 0),
            )
            cost = cost_of_legacy_usage(usage, at=record.at) if cost is None else cost
    except (UnknownPrice, ValueError) as exc:  # the turn is kept; its cost stays unknown (null)
        logger.error("turn of session %s not priced: %s", record.session_id, exc)
    row = TurnMetric(
        event_id=record.event_id,
        session_id=record.session_id,
        occurred_at=record.at,
        path=record.path,
        model=record.model or str(usage.get("chat_model") or ""),
        ttfa_ms=record.ttfa_ms,
        upstream_ms=record.upstream_ms,
        server_ms=record.server_ms,
        text_input_tokens=tokens.text_input,
        audio_input_tokens=tokens.audio_input,
        cached_text_input_tokens=tokens.cached_text_input,
        cached_audio_input_tokens=tokens.cached_audio_input,
        text_output_tokens=tokens.text_output,
        audio_output_tokens=tokens.audio_output,
        audio_input_seconds=float(usage.get("audio_input_seconds") or 0),
        audio_output_seconds=float(usage.get("audio_output_seconds") or 0),
        cost_usd=cost,
        price=price,
        ok=record.ok,
        error=record.error,
    )
    return row, None if record.spend_recorded else cost


def write_batch(batch: list[Record]) -> None:
    """Write one batch in one transaction (see the module docstring for what it feeds)."""
    starts = [r for r in batch if isinstance(r, SessionStart)]
    turns = [r for r in batch if isinstance(r, TurnRecord)]
    ends = [r for r in batch if isinstance(r, SessionEnd)]
    with transaction.atomic():
        SessionMetric.objects.bulk_create(
            [SessionMetric(session_id=s.session_id, started_at=s.at, mode=s.mode, reason=s.reason) for s in starts],
            ignore_conflicts=True,
        )
        rows = [_turn_row(t) for t in turns]
        known = set(
            TurnMetric.objects.filter(event_id__in=[row.event_id for row, _ in rows]).values_list("event_id", flat=True)
        )
        fresh = [(row, cost) for row, cost in rows if row.event_id not in known]
        TurnMetric.objects.bulk_create([row for row, _ in fresh], ignore_conflicts=True)
        spend: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
        for row, cost in fresh:
            if row.path == Mode.REALTIME and cost:
                spend[(row.session_id, row.occurred_at.replace(second=0, microsecond=0))] += cost
        for (session_id, minute), usd in spend.items():
            add_spend(usd, now=minute, session_id=session_id)
            realtime_spend_recorded.send(sender=MetricsCollector, now=minute)
        timed = [row for row, _ in fresh if row.path == Mode.REALTIME and row.ttfa_ms is not None and row.ttfa_ms >= 0]
        if timed:  # one signal per batch: the latency guard counts them in one update
            ttfa_ms = [row.ttfa_ms for row in timed]
            realtime_turn_recorded.send(sender=MetricsCollector, ttfa_ms=ttfa_ms, at=timed[-1].occurred_at)
        for end in ends:
            _finish_session(end)
        for feedback in (r for r in batch if isinstance(r, Feedback)):
            SessionMetric.objects.filter(session_id=feedback.session_id).update(satisfaction=feedback.rating)


def _finish_session(end: SessionEnd) -> None:
    turns = TurnMetric.objects.filter(session_id=end.session_id)
    totals = turns.aggregate(n=Count("id"), cost=Sum("cost_usd"))
    session = SessionMetric.objects.filter(session_id=end.session_id).first()
    if session is None:  # the start was never recorded: the first turn's path is the best guess
        first = turns.order_by("occurred_at").values_list("path", flat=True).first() or Mode.LEGACY
        session = SessionMetric(session_id=end.session_id, started_at=end.at, mode=first, reason="unrecorded")
    paths = {session.mode, *turns.values_list("path", flat=True).distinct()}
    session.ended_at = end.at
    session.outcome, session.error = end.outcome, end.error
    session.paths = ",".join(p for p in (Mode.REALTIME, Mode.LEGACY) if p in paths)
    session.turns, session.cost_usd = totals["n"], totals["cost"] or Decimal(0)
    session.fallbacks = sources.session_fallbacks(end.session_id)
    talk = end.conversation
    session.visitor_turns, session.reasks, session.corrections = talk.visitor_turns, talk.reasks, talk.corrections
    session.seconds_to_complete = talk.seconds_to_complete
    session.save()
    if session.mode == Mode.REALTIME:
        realtime_session_ended.send(sender=MetricsCollector, session_id=end.session_id, outcome=end.outcome, at=end.at)
        settle_session_cost(end.session_id, now=end.at)


_collector: MetricsCollector | None = None
_lock = threading.Lock()


def get_collector() -> MetricsCollector:
    """The process-wide collector (flushed at interpreter exit)."""
    global _collector
    with _lock:
        if _collector is None:
            _collector = MetricsCollector()
            atexit.register(_collector.stop)
        return _collector


class _Proxy:
    """``metrics.collector.collector``: the process-wide collector, created on first use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(get_collector(), name)


collector = _Proxy()
