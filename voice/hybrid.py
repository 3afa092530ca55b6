"""HybridVoiceManager: the voice path of one kiosk session, chosen once and switched to Legacy on failure.

`fallback.services.decide_for_session` decides the path when the session first starts (a reconnect gets the
same one). A Realtime session that fails (connection, upstream error, latency) or is caught by an emergency
stop moves to Legacy in place; one that passes the hourly cost limit moves at its next turn boundary. The
kiosk gets `mode.changed`, the workflow state carries over (both paths share it), and the visitor's
unanswered utterance is answered by Legacy instead of being lost. Exactly one fallback event is recorded.
Every Realtime response is priced into the rolling hour as soon as it is done, the one cut off at the end
of the session included.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from functools import partial
from typing import Any

from django.conf import settings

from core import bookkeeping
from core.blocking import run_blocking
from core.timing import TurnTiming
from fallback import guards
from fallback.emergency import COST_LIMIT_ACTION
from fallback.models import FallbackReason
from fallback.policy import Decision
from fallback.services import decide_for_session, record_fallback_event, record_realtime_spend
from metrics.collector import Conversation, collector
from metrics.models import Outcome
from realtime.client import settings_client_factory
from realtime.errors import RealtimeError
from realtime.kiosk import KioskOutput
from realtime.processor import RealtimeAudioProcessor
from reception import workflow
from reception.kiosk_voices import KioskVoices, kiosk_voices

from .legacy import LegacyAudioService

logger = logging.getLogger(__name__)

# What the Realtime processor reports, as the fallback reasons recorded for the session.
FAILURE_REASONS = {
    "connection_error": FallbackReason.CONNECTION_ERROR,
    "upstream_error": FallbackReason.UPSTREAM_ERROR,
    "latency": FallbackReason.LATENCY,
    "cost_limit": FallbackReason.COST_LIMIT,
}

VoicePath = LegacyAudioService | RealtimeAudioProcessor


def visit_outcome(quality: workflow.VisitQuality | None, ended: str) -> str:
    """The recorded outcome: from the reception when it finished (completed, or handed to the desk); a session
    that ends before the reception finished is abandoned (an error stays an error; a session the workflow never
    saw keeps how it ended)."""
    if quality is None or ended == Outcome.ERROR:
        return ended
    if quality.finished:
        return Outcome.HANDED_OFF if quality.to_desk else Outcome.COMPLETED
    return Outcome.ABANDONED


def conversation_of(quality: workflow.VisitQuality | None) -> Conversation:
    """The plain numbers the metrics keep of the workflow's reading of the conversation."""
    if quality is None:
        return Conversation()
    return Conversation(quality.turns, quality.reasks, quality.corrections, quality.seconds_to_complete)


def _voices_and_route(kiosk_id: int | None, session_id: str) -> tuple[KioskVoices, Decision]:
    """The kiosk's voices and the session's routing decision, in one trip to a worker thread (each trip queues
    behind the other sessions' database work when many kiosks open sessions at once)."""
    return kiosk_voices(kiosk_id), decide_for_session(session_id)


class HybridVoiceManager:
    """Owns the active voice path of one session and swaps it; the consumer talks only to this."""

    def __init__(
        self,
        session_id: str,
        language: str,
        output: KioskOutput,
        *,
        speak: bool = False,
    ) -> None:
        self.session_id = session_id
        self.language = language
        self.output = output
        self.speak = speak
        self.path: VoicePath | None = None
        self.decision = None
        self.voices: KioskVoices | None = None  # the kiosk's voices (or the settings'), read when the session opens
        self._kiosk_id: int | None = None
        self._switch_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    async def open(self, kiosk_id: int | None) -> None:
        """Decide the path (once), tell the kiosk, and greet or resume on it, in the kiosk's voice."""
        self._kiosk_id = kiosk_id
        self.voices, self.decision = await run_blocking(_voices_and_route)(kiosk_id, self.session_id)
        collector.record_session_start(self.session_id, self.decision.mode, self.decision.reason)
        await self.output.send_message(
            {
                "type": "session.started",
                "session_id": self.session_id,
                "mode": self.decision.mode,
                "reason": self.decision.reason,
            }
        )
        if self.decision.realtime:
            self.path = RealtimeAudioProcessor(
                self.session_id,
                self.language,
                self.output,
                speak=self.speak,
                on_failure=self._on_failure,
                on_response=self._realtime_response,
                client_factory=partial(settings_client_factory, voice=self.voices.realtime),
            )
        else:
            self.path = self._new_legacy(self.speak)
        await self.path.open(kiosk_id)
        if isinstance(self.path, RealtimeAudioProcessor) and self.path.sessions_opened:
            await run_blocking(guards.record_connection_result)(True)

    async def handle_text(self, text: str) -> None:
        await self.path.handle_text(text)

    async def feed_audio(self, pcm16: bytes) -> None:
        await self.path.feed_audio(pcm16)

    async def commit(self) -> None:
        await self.path.commit()

    async def interrupt(self) -> None:
        await self.path.interrupt()

    async def fall_back(self, reason: FallbackReason, detail: str = "") -> bool:
        """Move a Realtime session to Legacy in place; False when it is on Legacy already."""
        async with self._switch_lock:
            if not isinstance(self.path, RealtimeAudioProcessor):
                return False
            realtime = self.path
            legacy = self._new_legacy(realtime.speak)
            self.path = legacy  # from here on, kiosk input goes to Legacy
            realtime.detach()
            self._track(realtime.close())  # its reply in flight, if any, is drained for its usage meanwhile
            await run_blocking(record_fallback_event)(self.session_id, reason, detail[:500])
            await self.output.send_message({"type": "mode.changed", "mode": "legacy", "reason": reason.lower()})
            await self._answer_what_was_left(realtime, legacy)
            return True

    async def on_emergency(self, message: dict[str, Any]) -> None:
        """A control broadcast: an emergency stop moves a live Realtime session to Legacy at once; the hourly cost
        limit moves it once the turn in progress is answered."""
        if message.get("drain_live_sessions"):
            await self.fall_back(FallbackReason.EMERGENCY_STOP, message.get("reason", ""))
        elif message.get("action") == COST_LIMIT_ACTION and isinstance(self.path, RealtimeAudioProcessor):
            self.path.fall_back_at_turn_boundary("cost_limit")

    async def close(self, outcome: str = "completed") -> None:
        """Stop the active path and record how the session ended (the metrics feed the guards): the outcome is where
        the reception got to (`visit_outcome`), with the workflow's counts of the conversation.

        The session's end is recorded after its last response has been priced, so `cost-status` holds it.
        """
        await self._settle_tasks()
        if self.path is not None:
            await self.path.close()
        await self._settle_tasks()
        if self.decision is not None:
            try:
                quality = await run_blocking(workflow.quality)(self.session_id)
            except Exception:  # the session's end (and its cost settlement) is recorded whatever the workflow says
                logger.exception("session %s: the workflow's quality could not be read", self.session_id)
                quality = None
            collector.record_session_end(
                self.session_id, visit_outcome(quality, outcome), conversation=conversation_of(quality)
            )

    async def feedback(self, rating: int) -> None:
        """The visitor's one-tap rating of this session (no personal data: only the number)."""
        collector.record_feedback(self.session_id, rating)

    async def _settle_tasks(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _track(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _new_legacy(self, speak: bool) -> LegacyAudioService:
        voices = self.voices.local if self.voices is not None else None
        return LegacyAudioService(
            self.session_id, self.language, self.output, speak=speak, on_turn=self._legacy_turn, voices=voices
        )

    def _legacy_turn(self, **turn: Any) -> None:
        collector.record_turn(self.session_id, "legacy", **turn)

    def _realtime_response(self, response: dict[str, Any], timing: TurnTiming | None) -> None:
        """One Realtime response: priced into the rolling hour at once (see `_account`)."""
        self._track(self._account(response, timing))

    async def _account(self, response: dict[str, Any], timing: TurnTiming | None) -> None:
        """Add the response's exact cost to the hour's spend, record the turn (its time to first audio feeds the
        latency guard), and move the session to Legacy at its turn boundary once the hour's limit is passed."""
        spend = await bookkeeping.call_async(
            record_realtime_spend, self.session_id, settings.REALTIME_MODEL, response["usage"]
        )
        collector.record_turn(
            self.session_id,
            "realtime",
            model=settings.REALTIME_MODEL,
            usage=response["usage"],
            **(asdict(timing) if timing is not None else {}),
            cost_usd=spend.usd,
            ok=response.get("status") != "failed",
            response_id=response.get("id", ""),
            spend_recorded=spend.usd is not None,
            price=spend.price,
        )
        if spend.limit_reached and isinstance(self.path, RealtimeAudioProcessor):
            self.path.fall_back_at_turn_boundary("cost_limit")

    async def _answer_what_was_left(self, realtime: RealtimeAudioProcessor, legacy: LegacyAudioService) -> None:
        """Legacy answers the visitor's unanswered turn (a recording only if it holds speech), or says the workflow's
        reply the kiosk is still waiting for (a greeting, or the answer to a turn a function call already gave the
        workflow); a session that never got its greeting, and left nothing to answer, gets it now."""
        if realtime.unanswered_text:
            await legacy.handle_text(realtime.unanswered_text)
            return
        if realtime.reply_owed:
            await legacy.open(self._kiosk_id)
            return
        recording = realtime.unanswered_utterance
        answered = bool(recording) and await legacy.answer_recording(recording)
        if not answered and not realtime.sessions_opened:
            await legacy.open(self._kiosk_id)

    def _on_failure(self, reason: str, error: Exception | None) -> None:
        """Called by the Realtime processor; the switch runs in its own task (it closes the processor)."""
        fallback_reason = FAILURE_REASONS.get(reason, FallbackReason.UPSTREAM_ERROR)
        detail = f"{reason}: {error}" if error else reason
        self._track(self._fail(fallback_reason, detail, error))

    async def _fail(self, reason: FallbackReason, detail: str, error: Exception | None) -> None:
        if isinstance(error, RealtimeError) and reason == FallbackReason.CONNECTION_ERROR:
            if error.fatal and not error.retryable:
                await run_blocking(guards.record_fatal_upstream_error)(detail[:200])
            else:
                await run_blocking(guards.record_connection_result)(False)
        await self.fall_back(reason, detail)
