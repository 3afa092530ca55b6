"""RealtimeClient: one session with the OpenAI Realtime GA service (or the local emulator) over WebSocket.

The official `openai` SDK opens the connection (URL, bearer auth, headers); this module adds the session setup
the kiosk needs, event dispatch, response bookkeeping and a small exception hierarchy a fallback manager can act on.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import certifi
from django.conf import settings
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from websockets.exceptions import ConnectionClosed

from .errors import (
    RealtimeClosedError,
    RealtimeConnectionError,
    RealtimeError,
    RealtimeUpstreamError,
    connect_error,
    upstream_error,
)
from .redact import redacted_logger
from .voices import DEFAULT_REALTIME_VOICE

logger = logging.getLogger(__name__)


socket_logger = redacted_logger(f"{__name__}.socket")

PCM_24K = {"type": "audio/pcm", "rate": 24000}
SERVER_VAD: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}
APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'  # + base64 PCM16 + '"}': one append event
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
EMULATOR_API_KEY = "sk-test-emulator-key"  # what the bundled emulator is given when no OpenAI key is configured
# Every server event type of the GA protocol (the SDK's RealtimeServerEvent union). The client acts on some of them
# and passes all of them on; anything else is logged once per type and dropped.
SERVER_EVENT_TYPES = frozenset(
    {
        "conversation.created",
        "conversation.item.added",
        "conversation.item.created",
        "conversation.item.deleted",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "error",
        "input_audio_buffer.cleared",
        "input_audio_buffer.committed",
        "input_audio_buffer.dtmf_event_received",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.timeout_triggered",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "mcp_list_tools.in_progress",
        "output_audio_buffer.cleared",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "rate_limits.updated",
        "response.content_part.added",
        "response.content_part.done",
        "response.created",
        "response.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_text.delta",
        "response.output_text.done",
        "session.created",
        "session.updated",
    }
)


class RealtimeClient:
    """One Realtime GA session: connect, configure, stream audio both ways, run function calls.

    Iterate `events()` to receive server events as dicts; `received_at` is the `time.monotonic()` at which the
    event's frame was read from the socket (before parsing: time it then waits in this process is ours, not the
    service's). Non-fatal upstream errors go to `on_error` and are passed on; fatal errors, drops and stalls raise
    a RealtimeError subclass from the iterator. The client never reconnects by itself.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "gpt-realtime",
        base_url: str = "wss://api.openai.com/v1",
        instructions: str = "",
        voice: str = DEFAULT_REALTIME_VOICE,
        tools: Sequence[dict[str, Any]] = (),
        tool_choice: str | dict[str, Any] = "auto",
        language: str | None = "ja",
        transcription_model: str = "gpt-4o-mini-transcribe",
        turn_detection: dict[str, Any] | None = SERVER_VAD,
        connect_timeout: float = 5.0,
        ping_interval: float | None = 5.0,
        ping_timeout: float | None = 5.0,
        on_error: Callable[[RealtimeUpstreamError], Any] | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.connect_timeout = connect_timeout
        self.on_error = on_error
        self.session_config = session_config(
            instructions=instructions,
            voice=voice,
            tools=tools,
            tool_choice=tool_choice,
            language=language,
            transcription_model=transcription_model,
            turn_detection=turn_detection,
        )
        self.session: dict[str, Any] | None = None
        self.malformed_frames = 0
        self.received_at = 0.0  # when the frame of the event last yielded by events() was read
        self._openai = AsyncOpenAI(
            api_key=api_key,
            websocket_base_url=base_url,
            max_retries=0,
            http_client=DefaultAsyncHttpxClient(verify=_tls_context()),
        )
        self._ws_options = {
            "open_timeout": connect_timeout,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "max_size": MAX_MESSAGE_BYTES,
            "logger": socket_logger,
        }
        self._conn: Any = None
        self._ws: Any = None  # the websockets connection under the SDK's, for the audio hot path
        self._closing = False
        self._pending: deque[tuple[dict[str, Any], float]] = deque()  # events read by connect(), with arrival
        self._read_at = 0.0
        self._unknown_types: set[str] = set()
        self._active_response: str | None = None  # response id, or "requested" until response.created
        self._response_create_id: str | None = None
        self._event_number = 0
        self._response_queued = False
        self._queued_options: dict[str, Any] | None = None
        self._output_audio_bytes: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<RealtimeClient model={self.model} base_url={self.base_url}>"  # never the key

    @property
    def response_active(self) -> bool:
        return self._active_response is not None

    async def connect(self) -> dict[str, Any]:
        """Open the session and apply the configuration; returns the effective session from `session.updated`.

        Raises RealtimeConnectionError (or RealtimeHandshakeError) if the service cannot be reached in
        `connect_timeout`, and RealtimeUpstreamError if it rejects the configuration.
        """
        try:
            async with asyncio.timeout(self.connect_timeout):
                manager = self._openai.realtime.connect(model=self.model, websocket_connection_options=self._ws_options)
                self._conn = await manager.enter()
                self._ws = self._conn._connection  # never replaced: the SDK reconnects only with on_reconnecting
                await self._expect("session.created")
                await self._conn.session.update(session=self.session_config)
                await self._expect("session.updated")
        except RealtimeError:
            await self.close()
            raise
        except BaseException as exc:
            await self.close()
            error = connect_error(exc)
            if error is None:
                raise
            raise error from exc
        assert self.session is not None
        return self.session

    async def _expect(self, event_type: str) -> None:
        """Read events until `event_type`, keeping others for `events()`; an error event here is raised."""
        while True:
            event = await self._recv()
            if event is None:
                continue
            await self._track(event)
            if event["type"] == "error":
                raise upstream_error(event)
            if event["type"] == event_type:
                return
            self._pending.append((event, self._read_at))

    async def events(self, *, idle_timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Server events as dicts until `close()`. Raises RealtimeError subclasses for fatal errors, unexpected closes
        and, with `idle_timeout`, a stream that goes silent for that long (reason "stalled")."""
        try:
            while True:
                if self._pending:
                    event, self.received_at = self._pending.popleft()
                else:
                    try:
                        async with asyncio.timeout(idle_timeout):
                            event = await self._recv()
                    except TimeoutError as exc:
                        raise RealtimeConnectionError(
                            f"No server event for {idle_timeout} s", reason="stalled"
                        ) from exc
                    if event is None:
                        continue
                    self.received_at = self._read_at
                    await self._track(event)
                yield event
        except _ClosedByUs:
            return
        except RealtimeError:
            await self.close()
            raise

    async def _recv(self) -> dict[str, Any] | None:
        """The next well-formed event of a type the protocol defines, or None for a frame that was dropped."""
        if self._conn is None:
            raise _ClosedByUs
        try:
            raw = await self._conn.recv_bytes()
            self._read_at = time.monotonic()
        except ConnectionClosed as exc:
            if self._closing:
                raise _ClosedByUs from exc
            frame = exc.rcvd
            raise RealtimeClosedError(frame.code if frame else 1006, frame.reason if frame else "") from exc
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.malformed_frames += 1
            logger.warning("Malformed Realtime frame dropped (%d bytes, %d so far)", len(raw), self.malformed_frames)
            return None
        if event["type"] not in SERVER_EVENT_TYPES:
            if event["type"] not in self._unknown_types:
                self._unknown_types.add(event["type"])
                logger.warning("Unknown Realtime event type %r ignored", event["type"])
            return None
        return event

    async def _track(self, event: dict[str, Any]) -> None:
        """The client's own bookkeeping for the events it acts on."""
        match event["type"]:
            case "session.created" | "session.updated":
                self.session = event["session"]
            case "response.created":
                self._active_response = event["response"]["id"]
            case "response.output_audio.delta":
                delta = event["delta"]
                size = len(delta) * 3 // 4 - delta[-2:].count("=")
                self._output_audio_bytes[event["item_id"]] = self._output_audio_bytes.get(event["item_id"], 0) + size
            case "response.done":
                await self._response_done(event["response"])
            case "error":
                error = upstream_error(event)
                if error.fatal:
                    raise error
                if error.event_id is not None and error.event_id == self._response_create_id:
                    self._active_response = None
                await invoke(self.on_error, error)

    async def _response_done(self, response: dict[str, Any]) -> None:
        self._active_response = None
        details = response.get("status_details") or {}
        if response.get("status") == "failed" and details.get("error"):
            failure = details["error"]
            error = RealtimeUpstreamError(
                failure.get("code") or failure.get("type"),
                failure.get("message", "response failed"),
                error_type=failure.get("type"),
            )
            await invoke(self.on_error, error)
        if self._response_queued:
            self._response_queued = False
            await self.create_response(self._queued_options)

    async def _send(self, event: dict[str, Any]) -> None:
        if self._conn is None or self._closing:
            raise RealtimeConnectionError("Realtime session is not connected", reason="closed")
        try:
            await self._conn.send(event)
        except ConnectionClosed as exc:
            frame = exc.rcvd
            raise RealtimeClosedError(frame.code if frame else 1006, frame.reason if frame else "") from exc

    async def append_audio(self, pcm16: bytes) -> None:
        """Stream PCM16 24 kHz mono audio to the input buffer."""
        if self._ws is None or self._closing:
            raise RealtimeConnectionError("Realtime session is not connected", reason="closed")
        # Hot path (50 events/s per kiosk): the event built as text and sent on the websockets connection the SDK
        # holds. The SDK's typed append re-transforms the payload on every call, and even its raw send goes
        # through its reconnect send queue (a lock and a task lookup per frame); this session never reconnects.
        audio = base64.b64encode(pcm16).decode("ascii")
        try:
            await self._ws.send(APPEND_PREFIX + audio + '"}')
        except ConnectionClosed as exc:
            frame = exc.rcvd
            raise RealtimeClosedError(frame.code if frame else 1006, frame.reason if frame else "") from exc

    async def commit(self) -> None:
        """Commit the input buffer as a user item (push-to-talk; server VAD commits by itself)."""
        await self._send({"type": "input_audio_buffer.commit"})

    async def cancel_response(self) -> None:
        """Cancel the response in progress (harmless when none is: the service answers response_cancel_not_active).

        A `response.create` queued by `send_function_output` stays queued, so the function's result is still spoken.
        """
        await self._send({"type": "response.cancel"})

    def drop_queued_response(self) -> None:
        """Forget a response asked for after the active one (the session is ending: nothing more is to be said)."""
        self._response_queued = False
        self._queued_options = None

    async def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        """Tell the service how much of an assistant item's audio was actually played (clamped to what it sent)."""
        sent_ms = self._output_audio_bytes.get(item_id)
        if sent_ms is not None:
            audio_end_ms = min(audio_end_ms, sent_ms // 48)
        await self._send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": max(0, int(audio_end_ms)),
            }
        )

    async def send_function_output(self, call_id: str, output: dict[str, Any]) -> None:
        """Return a tool's result and ask for the follow-up response (queued until the current one is done)."""
        await self.create_item(
            {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output, ensure_ascii=False)}
        )
        await self.create_response()

    async def create_item(self, item: dict[str, Any]) -> None:
        """Add an item (a message, a function call or its output) at the end of the conversation."""
        await self._send({"type": "conversation.item.create", "item": item})

    async def create_response(self, options: dict[str, Any] | None = None) -> None:
        """Ask for a response now, or right after the active one ends (the service allows one at a time).

        `options` are `response.create` overrides for this response only (e.g. `instructions`, `tool_choice`).
        """
        if self._active_response is not None:
            self._response_queued = True
            self._queued_options = options
            return
        self._active_response = "requested"
        self._event_number += 1
        self._response_create_id = f"event_client_{self._event_number}"
        event: dict[str, Any] = {"type": "response.create", "event_id": self._response_create_id}
        if options:
            event["response"] = options
        await self._send(event)

    async def close(self) -> None:
        """Close the session (1000) and release the SDK client; safe to call more than once."""
        self._closing = True
        conn, self._conn, self._ws = self._conn, None, None
        if conn is not None:
            try:
                await conn.close()
            except (ConnectionClosed, OSError):
                logger.debug("Realtime socket was already gone at close")
        await self._openai.close()


def session_config(
    *,
    instructions: str,
    voice: str,
    tools: Sequence[dict[str, Any]],
    tool_choice: str | dict[str, Any],
    language: str | None,
    transcription_model: str,
    turn_detection: dict[str, Any] | None,
) -> dict[str, Any]:
    """The `session.update` payload: PCM16 24 kHz both ways, input transcription, the turn detection and tools."""
    transcription: dict[str, Any] = {"model": transcription_model}
    if language:
        transcription["language"] = language
    return {
        "type": "realtime",
        "instructions": instructions,
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": PCM_24K,
                "transcription": transcription,
                "turn_detection": dict(turn_detection) if turn_detection is not None else None,
            },
            "output": {"format": PCM_24K, "voice": voice},
        },
        "tools": list(tools),
        "tool_choice": tool_choice,
    }


def settings_client_factory(**options: Any) -> RealtimeClient:
    """A RealtimeClient for REALTIME_API_URL / OPENAI_API_KEY / REALTIME_MODEL (the emulator key without a key),
    speaking with REALTIME_VOICE unless `options` name another `voice` (a kiosk's own)."""
    url = settings.REALTIME_API_URL
    if not url:
        raise RealtimeConnectionError("REALTIME_API_URL is not configured", reason="refused", retryable=False)
    options.setdefault("voice", settings.REALTIME_VOICE)
    return RealtimeClient(
        api_key=settings.OPENAI_API_KEY or EMULATOR_API_KEY,
        model=settings.REALTIME_MODEL,
        base_url=url.rstrip("/").removesuffix("/realtime"),
        **options,
    )


def message_item(role: str, text: str) -> dict[str, Any]:
    """A conversation message item: user text in, assistant text as the transcript of what was said."""
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The CA bundle, loaded once per process. The SDK client of each session would otherwise load its own: ~80 ms
    of CPU on the event loop at every session start, which every other live session's audio waits for."""
    return ssl.create_default_context(cafile=certifi.where())


def warm_up() -> None:
    """Load what the SDK loads at its first session (its client, the Realtime resources, the CA bundle): ~1 s that
    would otherwise block the event loop, and every live session's audio, when the first visitor arrives."""
    client = AsyncOpenAI(api_key="warm-up", max_retries=0, http_client=DefaultAsyncHttpxClient(verify=_tls_context()))
    client.realtime.connect(model="warm-up")  # the connection manager only: nothing is opened


class _ClosedByUs(Exception):
    """The socket ended because `close()` was called: the event stream simply stops."""


async def invoke(function: Callable[..., Any] | None, *args: Any) -> None:
    if function is None:
        return
    result = function(*args)
    if inspect.isawaitable(result):
        await result
