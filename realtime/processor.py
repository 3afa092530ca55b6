"""RealtimeAudioProcessor: one kiosk session on the Realtime path, with the same public shape as LegacyAudioService.

Kiosk audio goes to the upstream input buffer; the server VAD finds turns, audio and transcripts come back to the
kiosk, and function calls run the reception workflow through the LangGraphBridge. The processor also truncates at
what was played on barge-in, renews the upstream session before its 60-minute limit, and reports upstream failures
through `on_failure`, so that the session manager can move the visitor to Legacy, which then answers
`unanswered_utterance` / `unanswered_text`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from core.blocking import run_blocking
from core.timing import TurnTiming
from reception import workflow

from .bridge import LangGraphBridge, build_instructions, say_exactly
from .client import SERVER_VAD, RealtimeClient, invoke, message_item, settings_client_factory
from .errors import RealtimeConnectionError, RealtimeError, RealtimeUpstreamError
from .kiosk import KioskOutput, ProtocolError
from .replies import BYTES_PER_MS, KioskReplies, append_capped
from .turn_clock import TurnClock

logger = logging.getLogger(__name__)

MAX_UNANSWERED_BYTES = 15_000 * BYTES_PER_MS
MIN_COMMIT_BYTES = 100 * BYTES_PER_MS  # the service refuses to commit less
HISTORY_MESSAGES = 20  # the last turns a renewed session is seeded with

ClientFactory = Callable[..., RealtimeClient]
FailureCallback = Callable[[str, Exception | None], Awaitable[None] | None]
ResponseCallback = Callable[[dict[str, Any], TurnTiming | None], Awaitable[None] | None]


class RealtimeAudioProcessor:
    """One session on the Realtime path; `output` receives transcripts, visit updates and audio.

    `on_failure(reason, error)` is called at most once, with "connection_error" (refused, rejected handshake,
    unexpected close, stalled upstream), "upstream_error" (error events and failed responses from the service) or
    "latency" (end of speech to first audio over `latency_budget_seconds`). `on_response(response, timing)` gets
    every finished response that carries usage, with the TurnTiming of the visitor's turn it answered with audio
    (None for a response that answered no turn with audio: a greeting, a function call).
    """

    mode = "realtime"

    def __init__(
        self,
        session_id: str,
        language: str,
        output: KioskOutput,
        *,
        speak: bool = False,
        on_failure: FailureCallback | None = None,
        on_response: ResponseCallback | None = None,
        client_factory: ClientFactory = settings_client_factory,
        renew_seconds: float | None = None,
        stall_seconds: float | None = None,
        latency_budget_seconds: float | None = None,
        turn_detection: dict[str, Any] | None = SERVER_VAD,
    ) -> None:
        self.session_id = session_id
        self.language = language
        self.output = output
        self.speak = speak  # set once the visitor talks: a talking visitor hears the answers
        self.on_failure = on_failure
        self.on_response = on_response
        self.client_factory = client_factory
        self.renew_seconds = renew_seconds if renew_seconds is not None else settings.REALTIME_SESSION_RENEW_SECONDS
        self.stall_seconds = stall_seconds if stall_seconds is not None else settings.REALTIME_STALL_SECONDS
        self.latency_budget_seconds = (
            latency_budget_seconds
            if latency_budget_seconds is not None
            else settings.REALTIME_FIRST_AUDIO_DEADLINE_SECONDS
        )
        self.turn_detection = turn_detection
        self.bridge = LangGraphBridge(session_id, output)
        self.unanswered_text: str | None = None
        self.clock = TurnClock()
        # The workflow's latest reply (the greeting, or its answer to a turn a function call gave it) has not reached
        # the kiosk yet: a session that moves to Legacy now has Legacy say it, or the kiosk would wait for ever.
        self.reply_owed = False
        self.sessions_opened = 0
        self.failed = False
        self._client: RealtimeClient | None = None
        self._unanswered = bytearray()
        self._swap_buffer = bytearray()
        self._ready = asyncio.Event()  # set while a live upstream session takes input
        self._swapping = False
        self._renew_due = False
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._renew_timer: asyncio.Task[None] | None = None
        self._tool_lock = asyncio.Lock()
        self._history: deque[tuple[str, str]] = deque(maxlen=HISTORY_MESSAGES)
        self.replies = KioskReplies(output)
        self._speech_active = False
        self._uncommitted_bytes = 0
        self._last_activity = time.monotonic()
        self._detached = False  # the session is ending or moving: nothing more reaches the kiosk or the workflow
        self._response_settled = asyncio.Event()  # set at each response.done (the close drain waits on it)
        self._move_due: str | None = None  # move to Legacy for this reason once the turn in progress is answered

    @property
    def unanswered_utterance(self) -> bytes:
        """Kiosk audio (PCM16 24 kHz) since the last answered turn, at most the last 15 s."""
        return bytes(self._unanswered)

    # --- the LegacyAudioService shape ------------------------------------------------------------------------

    async def open(self, kiosk_id: int | None) -> None:
        """Start or resume the workflow, open the upstream session and have the model say the greeting or the
        pending question. A connection failure is reported through `on_failure`, not raised."""
        turn = await run_blocking(workflow.start)(self.session_id, self.language, kiosk_id)
        await self.output.send_message({"type": "visit.updated", **turn.visit})
        instructions = build_instructions(turn, self.language)
        try:
            client = await self._connect(instructions)
        except RealtimeError as exc:
            await self._fail("connection_error", exc)
            return
        self._install(client)
        self._spawn(self._watch(), "watchdog")
        if turn.reply:
            self.reply_owed = True
            # A per-response instruction override: the words are the workflow's, the voice is the model's, and
            # the greeting becomes an assistant item of the conversation (an injected assistant item has no audio).
            await self._request(client.create_response({"instructions": say_exactly(instructions, turn.reply)}))

    async def handle_text(self, text: str) -> None:
        """A typed utterance: a user message, then a response."""
        text = text.strip()
        if not text:
            return
        self.unanswered_text = text
        self._history.append(("user", text))
        await self.output.send_message({"type": "transcript", "role": "visitor", "text": text, "final": True})
        if self._swapping:
            await self._ready.wait()
        client = self._client
        if client is None or self.failed or self._closing:
            return  # kept in unanswered_text for the Legacy path
        self._end_turn(time.monotonic())
        await self._request(client.create_item(message_item("user", text)), client.create_response())

    async def feed_audio(self, pcm16: bytes) -> None:
        """Kiosk audio (PCM16 24 kHz), relayed as it comes; held back only while the upstream session is swapped."""
        self.speak = True
        append_capped(self._unanswered, pcm16, MAX_UNANSWERED_BYTES)
        self._uncommitted_bytes += len(pcm16)
        client = self._client
        if self._swapping or client is None:
            append_capped(self._swap_buffer, pcm16, MAX_UNANSWERED_BYTES)
            return
        try:
            await client.append_audio(pcm16)
        except RealtimeError:
            # the event pump reports (or renews) the lost session
            append_capped(self._swap_buffer, pcm16, MAX_UNANSWERED_BYTES)

    async def commit(self) -> None:
        """Push-to-talk release. A manual commit never makes the service respond, so a response is asked for too;
        with server VAD, a turn the VAD already ended is left to it."""
        client = self._client
        if client is None or self.failed:
            return
        if self.turn_detection is not None and not self._speech_active:
            if self.clock.turn_end_at is not None or client.response_active:
                return
            raise ProtocolError("input_audio_empty", "No speech was heard; please speak while holding the button.")
        if self._uncommitted_bytes < MIN_COMMIT_BYTES:
            raise ProtocolError("input_audio_empty", "No speech was heard; please speak while holding the button.")
        self._uncommitted_bytes = 0
        self._end_turn(time.monotonic())
        await self._request(client.commit(), client.create_response())

    async def interrupt(self) -> None:
        """Barge-in or `response.cancel`: stop the reply at once, and tell the service what was actually heard."""
        client = self._client
        if client is None:
            return
        now = time.monotonic()
        playing = self.replies.playing(now)
        if client.response_active:
            await self._request(client.cancel_response())
        if not self.replies.cut(playing):
            return  # nothing reached the kiosk: no turn to flush
        if playing is not None and playing.session == self.sessions_opened:
            await self._request(client.truncate(playing.item_id, 0, playing.played_ms(now)))
        self.replies.flush()
        self.reply_owed = False
        await self.output.send_message({"type": "response.done", "status": "cancelled"})

    def detach(self) -> None:
        """Stop talking to the kiosk and the workflow at once (the session ends or moves to Legacy); `close` follows.

        `unanswered_utterance` / `unanswered_text` keep what they hold, for the Legacy path to answer.
        """
        self._detached = True
        for task in list(self._tasks):
            if task.get_name().startswith("realtime-tool-"):
                task.cancel()

    async def close(self) -> None:
        """Stop everything this session started and close the upstream session; nothing is left running.

        A reply still in flight is cancelled first and its `response.done` awaited for at most
        REALTIME_CLOSE_DRAIN_SECONDS: the service bills what it generated, so its usage must reach `on_response`.
        """
        self.detach()
        await self._drain_replies()
        self._closing = True
        self._ready.set()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    def fall_back_at_turn_boundary(self, reason: str) -> None:
        """Report `reason` through `on_failure` once the turn in progress is answered (at once when none is)."""
        if self.failed or self._closing or self._move_due is not None:
            return
        self._move_due = reason
        if self._idle():
            self._spawn(self._fail(reason, None), "move")

    async def _drain_replies(self) -> None:
        client, pump = self._client, self._pump
        if client is None or self.failed or pump is None or pump.done() or not client.response_active:
            return
        client.drop_queued_response()
        await self._request(client.cancel_response())
        deadline = time.monotonic() + settings.REALTIME_CLOSE_DRAIN_SECONDS
        while client.response_active and not pump.done():
            self._response_settled.clear()
            settled = asyncio.ensure_future(self._response_settled.wait())
            left = max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({settled, pump}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            settled.cancel()
            if not done:
                logger.warning("session %s: no usage for the reply cancelled at close", self.session_id)
                return

    # --- upstream sessions -----------------------------------------------------------------------------------

    async def _connect(self, instructions: str) -> RealtimeClient:
        """A configured upstream session seeded with the last turns of the conversation."""
        client = self.client_factory(
            instructions=instructions,
            tools=workflow.TOOLS,
            language=self.language,
            turn_detection=self.turn_detection,
            on_error=self._on_upstream_error,
        )
        await client.connect()
        for role, text in self._history:
            await client.create_item(message_item(role, text))
        self.sessions_opened += 1
        return client

    def _install(self, client: RealtimeClient) -> None:
        """Make `client` the live session: its events are handled and its renewal is scheduled."""
        self._client = client
        self._pump = self._spawn(self._pump_events(client), "events")
        if self._renew_timer is not None:
            self._renew_timer.cancel()
        self._renew_timer = self._spawn(self._renew_later(), "renew-timer")
        self._ready.set()

    async def _renew_later(self) -> None:
        await asyncio.sleep(self.renew_seconds)
        self._renew_due = True
        self._maybe_renew()

    def _idle(self) -> bool:
        client = self._client
        return (
            client is not None
            and not client.response_active
            and self.clock.turn_end_at is None
            and not self._speech_active
            and not self.clock.tools_running
        )

    def _maybe_renew(self) -> None:
        if self._renew_due and not self._swapping and not self.failed and self._idle():
            self._begin_swap(replay=False)

    def _begin_swap(self, *, replay: bool) -> None:
        self._swapping = True
        self._renew_due = False
        self._ready.clear()
        self._spawn(self._swap(replay=replay), "renew")

    async def _swap(self, *, replay: bool) -> None:
        """Open a new upstream session seeded with the conversation, flush the audio held meanwhile, close the old.

        `replay`: the old session died with a turn unanswered; the new one gets that turn again.
        """
        old, old_pump = self._client, self._pump
        try:
            new = await self._connect(await self.bridge.instructions(self.language))
        except RealtimeError as exc:
            self._swapping = False
            self._ready.set()
            await self._fail("connection_error", exc)
            return
        try:
            self._install(new)
            if replay and self.unanswered_text is not None:
                await self._request(new.create_item(message_item("user", self.unanswered_text)), new.create_response())
            elif replay:
                self._swap_buffer[:] = self._unanswered  # the whole utterance again; the VAD finds its end
            while self._swap_buffer:
                chunk = bytes(self._swap_buffer)
                self._swap_buffer.clear()
                await self._request(new.append_audio(chunk))
            self._swapping = False
            logger.info(
                "session %s: upstream Realtime session renewed (%d opened)", self.session_id, self.sessions_opened
            )
        finally:
            if old is not None:
                await old.close()
        if old_pump is not None:
            await asyncio.gather(old_pump, return_exceptions=True)

    # --- upstream events -------------------------------------------------------------------------------------

    async def _pump_events(self, client: RealtimeClient) -> None:
        try:
            async for event in client.events():
                if client is self._client:
                    await self._on_event(client, event)
        except RealtimeUpstreamError as exc:
            if client is self._client and not self._closing:
                if exc.code == "session_expired":
                    pending = self.clock.turn_end_at is not None or self.clock.tools_running > 0
                    self._begin_swap(replay=pending)
                else:
                    await self._fail("upstream_error", exc)
        except RealtimeError as exc:
            if client is self._client and not self._closing:
                await self._fail("connection_error", exc)

    async def _on_event(self, client: RealtimeClient, event: dict[str, Any]) -> None:
        now = self._last_activity = time.monotonic()
        if self._detached and event["type"] != "response.done":
            return  # ending or moving: only the usage of what the service generated still matters
        arrived = client.received_at
        match event["type"]:
            case "response.created":
                self.replies.response_id = event["response"]["id"]
            case "response.output_audio.delta":
                await self._on_audio(event, now, arrived)
            case "response.output_audio_transcript.delta":
                if (text := self.replies.partial_transcript(event)) is not None:
                    await self._transcript("assistant", text, final=False)
            case "response.output_audio_transcript.done":
                if (text := self.replies.final_transcript(event)) is not None:
                    self._history.append(("assistant", text))
                    await self._transcript("assistant", text, final=True)
            case "conversation.item.input_audio_transcription.completed":
                if event["transcript"].strip():
                    self._history.append(("user", event["transcript"]))
                    await self._transcript("visitor", event["transcript"], final=True)
            case "input_audio_buffer.speech_started":
                self._speech_active = True
                self.clock.turn_end_at = None
                await self.interrupt()
            case "input_audio_buffer.speech_stopped":
                self._speech_active = False
                self._end_turn(arrived)
            case "input_audio_buffer.committed":
                self._uncommitted_bytes = 0
            case "response.function_call_arguments.done":
                self.clock.tool_started(arrived)
                self._spawn(self._run_tool(client, event["call_id"], event.get("name", ""), event["arguments"]), "tool")
            case "response.done":
                await self._on_response_done(event["response"])

    async def _on_audio(self, event: dict[str, Any], now: float, arrived: float) -> None:
        turn_end = self.clock.take_turn_end()
        self._unanswered.clear()
        self.unanswered_text = None
        await self.replies.audio(event, now, speak=self.speak, session=self.sessions_opened)
        if turn_end is not None:
            # Sent to the kiosk (or, to a visitor who only types, handled): the turn's wait is over.
            self.clock.answered(turn_end, event["response_id"], arrived)

    def _end_turn(self, at: float) -> None:
        """The visitor's turn ended at `at` (monotonic): its wait for first audio starts; a reply owed is superseded."""
        self.clock.end_turn(at)
        self.reply_owed = False

    async def _on_response_done(self, response: dict[str, Any]) -> None:
        self.replies.response_id = None
        timing = self.clock.timing(response["id"])
        if response.get("usage") and self.on_response is not None:
            await invoke(self.on_response, response, timing)
        self._response_settled.set()
        if self._detached:
            return
        status = self.replies.done(response)
        if status is not None:
            self.reply_owed = False
            await self.output.send_message({"type": "response.done", "status": status})
        if self._move_due is not None and self._idle():
            await self._fail(self._move_due, None)
            return
        self._maybe_renew()

    async def _run_tool(self, client: RealtimeClient, call_id: str, name: str, arguments: str) -> None:
        """One function call through the bridge; calls of a session run in order."""
        try:
            async with self._tool_lock:
                result = await self.bridge.handle_call(client, call_id, name, arguments)
            if result.turn is not None:
                # The workflow has this turn now: replaying it on the Legacy path would apply it twice.
                self._unanswered.clear()
                self.unanswered_text = None
                self.reply_owed = True
        except RealtimeError:
            logger.warning("session %s: the output of %s could not be sent upstream", self.session_id, name)
        finally:
            self._last_activity = time.monotonic()
            self.clock.tool_finished(self._last_activity)

    def _on_upstream_error(self, error: RealtimeUpstreamError) -> None:
        """Non-fatal errors: our own request problems are logged; the service's failures are reported."""
        if error.error_type == "invalid_request_error":
            logger.warning("session %s: Realtime request refused: %s", self.session_id, error)
            return
        self._spawn(self._fail("upstream_error", error), "failure")

    async def _watch(self) -> None:
        """Report a stalled upstream or a turn answered too late."""
        tick = max(0.02, min(self.stall_seconds, self.latency_budget_seconds) / 4)
        while not self.failed:
            await asyncio.sleep(tick)
            client, now = self._client, time.monotonic()
            if self._swapping or client is None:
                continue
            waiting = (client.response_active or self.clock.turn_end_at is not None) and not self.clock.tools_running
            if waiting and now - self._last_activity > self.stall_seconds:
                error = RealtimeConnectionError(
                    f"No Realtime event for {self.stall_seconds:g} s while a response was expected", reason="stalled"
                )
                await self._fail("connection_error", error)
            elif self.clock.turn_end_at is not None and now - self.clock.turn_end_at > self.latency_budget_seconds:
                await self._fail("latency", None)

    # --- helpers ---------------------------------------------------------------------------------------------

    async def _request(self, *requests: Awaitable[None]) -> None:
        """Send requests upstream in order; a dead session is reported by the event pump, not here."""
        self._last_activity = time.monotonic()
        try:
            for request in requests:
                await request
        except RealtimeError as exc:
            logger.warning("session %s: Realtime request not sent: %s", self.session_id, exc)
        finally:
            for request in requests:
                if asyncio.iscoroutine(request):
                    request.close()  # not awaited after a failure: discard without a warning

    async def _transcript(self, role: str, text: str, *, final: bool) -> None:
        await self.output.send_message({"type": "transcript", "role": role, "text": text, "final": final})

    async def _fail(self, reason: str, error: Exception | None) -> None:
        if self.failed or self._closing or self._detached:
            return
        self.failed = True
        logger.warning("session %s: Realtime path failed (%s): %s", self.session_id, reason, error)
        await invoke(self.on_failure, reason, error)

    def _spawn(self, coroutine: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        task.set_name(f"realtime-{name}-{self.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("session %s: Realtime task failed", self.session_id, exc_info=task.exception())
