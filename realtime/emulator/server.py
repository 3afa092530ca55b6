"""A local `websockets` server that speaks the OpenAI Realtime GA protocol, with fault knobs for drills and tests."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..redact import redacted_logger
from .audio import BYTES_PER_MS, duration_ms, rms
from .brain import Brain, BrainContext, CallFunction, Say, ScriptedBrain
from .protocol import ProtocolError, default_session, merge_session, new_id, validate_session_update

logger = logging.getLogger(__name__)

MAX_APPEND_BYTES = 15 * 1024 * 1024
MIN_COMMIT_MS = 100
VAD_FRAME_MS = 20
VAD_LEVEL_PER_THRESHOLD = 0.05  # RMS level (0-1) that counts as speech is threshold x this factor
HANDSHAKE_FAULTS = (401, 403, 429, 500, 502, 503)
CLOSE_FAULTS = (1001, 1006, 1011, 1012, 1013, 1008, 4000)
ERROR_FAULTS = ("rate_limit_exceeded", "session_expired", "server_error", "response_cancel_not_active")
MALFORMED_FAULTS = ("non_json", "missing_type", "unknown_type", "binary")
DRILL_PATH = "/v1/realtime/_faults"
_POKE = object()


@dataclass
class Faults:
    """Failure knobs, read live by every session. Change them with `EmulatorServer.set_faults` at run time.

    The `*_after_events` counters are per session: the fault fires once the session has sent that many events.
    """

    refuse_connections: bool = False
    """Reset every new TCP connection before the HTTP upgrade (the client sees a dropped handshake)."""
    handshake_status: int | None = None
    """Reject the upgrade with this HTTP status (401, 403, 429, 500, 502, 503), as the service does."""
    retry_after_seconds: int | None = None
    """`Retry-After` header sent with a 429 or 503 handshake rejection."""
    latency_ms: float = 0.0
    """Every server event reaches the client this much later than it was produced."""
    stall: bool = False
    """Hold every server event while true; the socket stays open and answers pings."""
    close_code: int | None = None
    """Close each session with this code (1006: drop TCP with no close frame) after `close_after_events`."""
    close_after_events: int = 0
    error_code: str | None = None
    """Send one `error` event with this code after `error_after_events`; `session_expired` also closes with 1001."""
    error_after_events: int = 0
    malformed: str | None = None
    """Send one malformed frame (non_json, missing_type, unknown_type, binary) after `malformed_after_events`."""
    malformed_after_events: int = 0
    fail_responses: str | None = None
    """End every response as `failed` with this error code (rate_limit_exceeded, insufficient_quota)."""

    def validate(self) -> None:
        """Raise ValueError for a value the emulator cannot produce."""
        if self.handshake_status is not None and self.handshake_status not in HANDSHAKE_FAULTS:
            raise ValueError(f"handshake_status must be one of {HANDSHAKE_FAULTS}")
        if self.close_code is not None and self.close_code not in CLOSE_FAULTS:
            raise ValueError(f"close_code must be one of {CLOSE_FAULTS}")
        if self.error_code is not None and self.error_code not in ERROR_FAULTS:
            raise ValueError(f"error_code must be one of {ERROR_FAULTS}")
        if self.malformed is not None and self.malformed not in MALFORMED_FAULTS:
            raise ValueError(f"malformed must be one of {MALFORMED_FAULTS}")


def parse_fault(name: str, text: str) -> Any:
    """A fault knob's value from text (command line or the drill endpoint): "none" or "" clears an optional knob."""
    kinds = {field.name: str(field.type) for field in dataclasses.fields(Faults)}
    if name not in kinds:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(kinds)}")
    kind = kinds[name]
    if kind.endswith("| None") and text.lower() in ("", "none"):
        return None
    if kind == "bool":
        return text.lower() in ("1", "true", "yes", "on")
    if kind.startswith("int"):
        return int(text)
    if kind == "float":
        return float(text)
    return text


@dataclass
class EmulatorConfig:
    """Behaviour of the emulated service that is not a fault."""

    accepted_keys: frozenset[str] | None = None
    """API keys accepted at the handshake; None accepts any non-empty key."""
    max_session_seconds: float = 3600.0
    """Session lifetime; at the end the session gets `session_expired` and a 1001 close."""
    audio_chunk_ms: int = 100
    """Length of each `response.output_audio.delta`."""
    pace: float = 0.0
    """Seconds of wall time per second of generated audio (0: as fast as possible; the service is faster than
    real time, so use less than 1)."""
    rate_limit_tokens: int = 40_000


@dataclass
class _Close:
    code: int
    reason: str = ""


@dataclass
class _Raw:
    frame: str | bytes


@dataclass
class _ResponseRun:
    id: str
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None


class EmulatorServer:
    """The emulated service. Use as `async with EmulatorServer(brain) as server:` or call `start()`/`stop()`.

    `received` and `sent` record every client and server event of every session, in order, for assertions.
    """

    def __init__(
        self,
        brain: Brain | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.brain = brain or ScriptedBrain()
        self.host = host
        self.port = port
        self.config = config or EmulatorConfig()
        self.faults = faults or Faults()
        self.faults.validate()
        self.sessions: list[EmulatorSession] = []
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.handshakes = 0
        self._server: Server | None = None
        self._session_added = asyncio.Condition()

    @property
    def base_url(self) -> str:
        """The `websocket_base_url` to give the openai SDK (it appends `/realtime`)."""
        return f"ws://{self.host}:{self.port}/v1"

    @property
    def url(self) -> str:
        return f"{self.base_url}/realtime"

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            max_size=MAX_APPEND_BYTES * 2,
            compression=None,
            logger=redacted_logger(f"{__name__}.socket"),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("Realtime emulator listening on %s", self.url)

    async def stop(self) -> None:
        """Close every session (1001) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def set_faults(self, **changes: Any) -> None:
        """Change fault knobs now; live sessions re-check them at once (a changed one-shot fault re-arms)."""
        updated = dataclasses.replace(self.faults, **changes)
        updated.validate()
        for name, value in changes.items():
            setattr(self.faults, name, value)
        for session in self.sessions:
            session.rearm(changes)
            session.poke()

    async def wait_for_session(self, index: int = 0) -> EmulatorSession:
        """The `index`-th session accepted since the start, waiting for it if needed (bound it with a timeout)."""
        async with self._session_added:
            await self._session_added.wait_for(lambda: len(self.sessions) > index)
        return self.sessions[index]

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.faults.refuse_connections:
            connection.transport.abort()
            return _json_response(HTTPStatus.SERVICE_UNAVAILABLE, {})
        url = urlsplit(request.path)
        if url.path == DRILL_PATH:
            return self._drill(request, url.query)
        if url.path.rstrip("/") != "/v1/realtime":
            return _error_response(HTTPStatus.NOT_FOUND, "invalid_request_error", "not_found", "Not found.")
        key = _api_key(request.headers)
        if not key:
            return _error_response(
                HTTPStatus.UNAUTHORIZED,
                "invalid_request_error",
                None,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.config.accepted_keys is not None and key not in self.config.accepted_keys:
            return _error_response(
                HTTPStatus.UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
                f"Incorrect API key provided: {key[:3]}***{key[-4:]}.",
            )
        status = self.faults.handshake_status
        if status is not None:
            return _handshake_fault(status, self.faults.retry_after_seconds)
        query = parse_qs(url.query)
        if sorted(query) != ["model"]:
            return _error_response(
                HTTPStatus.BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                "Exactly one of 'model', 'call_id' or 'intent' is required; the emulator serves 'model' sessions.",
            )
        return None

    def _drill(self, request: Request, query: str) -> Response:
        """`GET /v1/realtime/_faults?knob=value&...` (plain HTTP, same bearer key): change and show fault knobs."""
        key = _api_key(request.headers)
        if not key or (self.config.accepted_keys is not None and key not in self.config.accepted_keys):
            return _error_response(HTTPStatus.UNAUTHORIZED, "invalid_request_error", "invalid_api_key", "Bad key.")
        try:
            changes = {name: parse_fault(name, values[-1]) for name, values in parse_qs(query, True).items()}
            if changes:
                self.set_faults(**changes)
        except (TypeError, ValueError) as exc:
            return _error_response(HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_value", str(exc))
        if changes:
            logger.warning("Fire drill: emulator faults changed: %s", changes)
        return _json_response(HTTPStatus.OK, dataclasses.asdict(self.faults))

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        model = parse_qs(urlsplit(request.path).query)["model"][0]
        session = EmulatorSession(self, connection, model)
        async with self._session_added:
            self.sessions.append(session)
            self._session_added.notify_all()
        beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "") or "openai-beta.realtime-v1" in (
            request.headers.get("Sec-WebSocket-Protocol", "")
        )
        await session.run(beta=beta)


class EmulatorSession:
    """One emulated Realtime session: the conversation, the input buffer with VAD, and at most one response."""

    def __init__(self, server: EmulatorServer, connection: ServerConnection, model: str) -> None:
        self.server = server
        self.connection = connection
        self.id = new_id("sess")
        self.conversation_id = new_id("conv")
        self.config = default_session(model, self.id, int(time.time() + server.config.max_session_seconds))
        self.items: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.voice_locked = False
        self._audio: dict[str, bytes] = {}
        self._transcriptions: dict[str, asyncio.Task[None]] = {}
        self._response: _ResponseRun | None = None
        self._last_input: dict[str, int] = {"text": 0, "audio": 0}
        self._outbox: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self._fired: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Input buffer: bytes since the last commit or clear, and where they start on the session's audio timeline.
        self._buffer = bytearray()
        self._buffer_start_ms = 0
        self._vad_pos = 0
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._silence_ms = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def run(self, *, beta: bool) -> None:
        writer = asyncio.create_task(self._write_loop(), name=f"emulator-writer-{self.id}")
        expiry = asyncio.create_task(self._expire_later(), name=f"emulator-expiry-{self.id}")
        try:
            if beta:
                self._send_error(
                    ProtocolError(
                        "beta_api_shape_disabled",
                        "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.",
                    )
                )
                self._queue(_Close(4000, "beta_api_shape_disabled"))
            else:
                self.emit("session.created", session=copy.deepcopy(self.config))
            with contextlib.suppress(ConnectionClosed):
                async for message in self.connection:
                    await self._on_message(message)
        finally:
            tasks = [writer, expiry, *self._tasks, *self._transcriptions.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def poke(self) -> None:
        """Wake the writer so that changed fault knobs apply even to an idle session."""
        self._queue(_POKE)

    def rearm(self, changes: dict[str, Any]) -> None:
        for name in ("close", "error", "malformed"):
            if any(key.startswith(name) for key in changes):
                self._fired.discard(name)

    async def _expire_later(self) -> None:
        await asyncio.sleep(self.server.config.max_session_seconds)
        self.expire()

    def expire(self) -> None:
        """End the session as the service does at its maximum duration: `session_expired`, then close 1001."""
        minutes = self.server.config.max_session_seconds / 60
        text = f"{minutes:g} minutes" if minutes >= 1 else f"{self.server.config.max_session_seconds:g} seconds"
        message = f"Your session hit the maximum duration of {text}."
        self._send_error(ProtocolError("session_expired", message))
        self._queue(_Close(1001, message))

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{name}-{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending -----------------------------------------------------------------------------------------------

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Queue one server event; the writer applies fault knobs and sends it."""
        event = {"type": event_type, "event_id": new_id("event"), **fields}
        self._queue(event)
        return event

    def _queue(self, entry: Any) -> None:
        self._outbox.put_nowait((asyncio.get_running_loop().time(), entry))

    def _send_error(self, error: ProtocolError, client_event_id: str | None = None) -> None:
        self.emit("error", error=error.payload(client_event_id))

    async def _write_loop(self) -> None:
        faults = self.server.faults
        while True:
            queued_at, entry = await self._outbox.get()
            if await self._fire_faults():
                return
            if entry is _POKE:
                continue
            while faults.stall:  # noqa: ASYNC110 - knobs are plain attributes, so poll rather than wait on an event
                await asyncio.sleep(0.02)
            # Latency delays each event from when it was produced (a slow pipe), so bursts are not slowed cumulatively.
            delay = queued_at + faults.latency_ms / 1000 - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            if isinstance(entry, _Close):
                await self._close(entry.code, entry.reason)
                return
            if isinstance(entry, _Raw):
                await self.connection.send(entry.frame)
                continue
            await self.connection.send(json.dumps(entry, ensure_ascii=False))
            self.sent.append(entry)
            self.server.sent.append(entry)
            if await self._fire_faults():
                return

    async def _fire_faults(self) -> bool:
        """Fire the one-shot faults that are due; True when the session is closed."""
        faults, count = self.server.faults, len(self.sent)
        if faults.malformed and "malformed" not in self._fired and count >= faults.malformed_after_events:
            self._fired.add("malformed")
            await self.connection.send(_malformed_frame(faults.malformed))
        if faults.error_code and "error" not in self._fired and count >= faults.error_after_events:
            self._fired.add("error")
            if faults.error_code == "session_expired":
                self.expire()
            else:
                self._send_error(_fault_error(faults.error_code))
        if faults.close_code is not None and "close" not in self._fired and count >= faults.close_after_events:
            self._fired.add("close")
            await self._close(faults.close_code, "emulated fault")
            return True
        return False

    async def _close(self, code: int, reason: str) -> None:
        if code == 1006:
            self.connection.transport.abort()  # no close frame: the client sees an abnormal closure
        else:
            await self.connection.close(code, reason[:120])

    # -- receiving ---------------------------------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._send_error(ProtocolError("invalid_event", "Binary frames are not supported; send JSON text."))
            return
        try:
            event = json.loads(message)
        except ValueError:
            self._send_error(ProtocolError("invalid_json", "The event could not be parsed as JSON."))
            return
        if not isinstance(event, dict):
            self._send_error(ProtocolError("invalid_event", "The event must be a JSON object."))
            return
        self.received.append(event)
        self.server.received.append(event)
        event_type = event.get("type")
        handler = _HANDLERS.get(event_type) if isinstance(event_type, str) else None
        try:
            if event_type is None:
                raise ProtocolError("invalid_event", "The 'type' field is missing.")
            if handler is None:
                raise ProtocolError("invalid_value", f"Invalid value: '{event_type}'.", "type")
            await handler(self, event)
        except ProtocolError as error:
            self._send_error(error, event.get("event_id"))

    async def _session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        voice = self.config["audio"]["output"]["voice"]
        validate_session_update(update, voice_locked=self.voice_locked, current_voice=voice)
        self.config = merge_session(self.config, update)
        self.emit("session.updated", session=copy.deepcopy(self.config))

    async def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except binascii.Error as exc:
            raise ProtocolError("invalid_value", "Invalid 'audio': not valid base64.", "audio") from exc
        if len(pcm) > MAX_APPEND_BYTES:
            raise ProtocolError("string_above_max_length", "Invalid 'audio': at most 15 MiB per append.", "audio")
        self._buffer += pcm
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection is not None:
            self._run_vad(detection)

    def _run_vad(self, detection: dict[str, Any]) -> None:
        """Energy VAD over whole 20 ms frames not yet analysed (an emulator stand-in for the service's model)."""
        frame_bytes = VAD_FRAME_MS * BYTES_PER_MS
        level = detection.get("threshold", 0.5) * VAD_LEVEL_PER_THRESHOLD
        while len(self._buffer) - self._vad_pos >= frame_bytes:
            frame = bytes(self._buffer[self._vad_pos : self._vad_pos + frame_bytes])
            frame_start = self._buffer_start_ms + self._vad_pos // BYTES_PER_MS
            self._vad_pos += frame_bytes
            speaking = rms(frame) >= level
            if self._speech_item is None and speaking:
                self._speech_item = new_id("item")
                padding = detection.get("prefix_padding_ms", 300)
                self._speech_start_ms = max(self._buffer_start_ms, frame_start - padding)
                self._silence_ms = 0
                self.emit(
                    "input_audio_buffer.speech_started", audio_start_ms=self._speech_start_ms, item_id=self._speech_item
                )
                if detection.get("interrupt_response", True) and self._response is not None:
                    self._response.cancel_reason = "turn_detected"
            elif self._speech_item is not None:
                self._silence_ms = 0 if speaking else self._silence_ms + VAD_FRAME_MS
                if self._silence_ms >= detection.get("silence_duration_ms", 200):
                    self._end_speech(frame_start + VAD_FRAME_MS, detection)

    def _end_speech(self, end_ms: int, detection: dict[str, Any]) -> None:
        item_id = self._speech_item
        assert item_id is not None
        self.emit("input_audio_buffer.speech_stopped", audio_end_ms=end_ms, item_id=item_id)
        start = (self._speech_start_ms - self._buffer_start_ms) * BYTES_PER_MS
        end = (end_ms - self._buffer_start_ms) * BYTES_PER_MS
        audio = bytes(self._buffer[start:end])
        del self._buffer[:end]
        self._vad_pos -= end
        self._buffer_start_ms = end_ms
        self._speech_item = None
        self._commit_audio(item_id, audio)
        if detection.get("create_response", True) and self._response is None:
            self._start_response({})

    async def _commit(self, event: dict[str, Any]) -> None:
        audio = bytes(self._buffer)
        if duration_ms(audio) < MIN_COMMIT_MS:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {len(audio) / BYTES_PER_MS:.2f}ms of audio.",
            )
        item_id = self._speech_item or new_id("item")
        self._reset_buffer()
        self._commit_audio(item_id, audio)

    async def _clear(self, event: dict[str, Any]) -> None:
        self._reset_buffer()
        self.emit("input_audio_buffer.cleared")

    def _reset_buffer(self) -> None:
        self._buffer_start_ms += len(self._buffer) // BYTES_PER_MS
        self._buffer.clear()
        self._vad_pos = 0
        self._speech_item = None

    def _commit_audio(self, item_id: str, audio: bytes) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        item = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._audio[item_id] = audio
        self._add_item(item, previous)
        self._transcriptions[item_id] = self._spawn(self._transcribe(item, audio), "emulator-transcribe")

    async def _transcribe(self, item: dict[str, Any], audio: bytes) -> None:
        transcription = self.config["audio"]["input"]["transcription"] or {}
        transcript = await self.server.brain.transcribe(audio, transcription.get("language"))
        item["content"][0]["transcript"] = transcript
        if self.config["audio"]["input"]["transcription"] is not None:
            audio_tokens = max(1, duration_ms(audio) // 100)
            text_tokens = _text_tokens(transcript)
            self.emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item["id"],
                content_index=0,
                transcript=transcript,
                usage={
                    "type": "tokens",
                    "input_tokens": audio_tokens,
                    "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
                    "output_tokens": text_tokens,
                    "total_tokens": audio_tokens + text_tokens,
                },
            )

    def _add_item(self, item: dict[str, Any], previous_item_id: str | None) -> None:
        if previous_item_id is None:
            self.items.insert(0, item)
        else:
            index = next(i for i, existing in enumerate(self.items) if existing["id"] == previous_item_id)
            self.items.insert(index + 1, item)
        self.emit("conversation.item.added", item=_public(item), previous_item_id=previous_item_id)
        self.emit("conversation.item.done", item=_public(item), previous_item_id=previous_item_id)

    def _find(self, item_id: Any) -> dict[str, Any]:
        for item in self.items:
            if item["id"] == item_id:
                return item
        # The exact code the service uses for an unknown item id is unverified.
        raise ProtocolError("item_not_found", f"Item with item_id not found: {item_id}", "item_id")

    async def _item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ProtocolError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        item = _validate_item(item, self.items)
        previous = event.get("previous_item_id")
        if previous == "root":
            previous = None
        elif previous is None:
            previous = self.items[-1]["id"] if self.items else None
        elif not any(existing["id"] == previous for existing in self.items):
            raise ProtocolError(
                "invalid_value", f"Invalid 'previous_item_id': {previous} not found.", "previous_item_id"
            )
        self._add_item(item, previous)

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        item = _public(self._find(event.get("item_id")))
        audio = self._audio.get(item["id"])
        if audio is not None and item.get("content"):
            item["content"][0]["audio"] = base64.b64encode(audio).decode("ascii")
        self.emit("conversation.item.retrieved", item=item)

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        item = self._find(event.get("item_id"))
        if item.get("role") != "assistant" or item["id"] not in self._audio:
            raise ProtocolError("invalid_value", "Only assistant messages with audio can be truncated.", "item_id")
        content_index = event.get("content_index")
        if content_index != 0:
            raise ProtocolError("invalid_value", "Invalid 'content_index': must be 0.", "content_index")
        end_ms = event.get("audio_end_ms")
        audio = self._audio[item["id"]]
        if not isinstance(end_ms, int) or end_ms < 0:
            raise ProtocolError(
                "invalid_type", "Invalid 'audio_end_ms': expected a non-negative integer.", "audio_end_ms"
            )
        if end_ms > duration_ms(audio):
            raise ProtocolError(
                "invalid_value",
                f"Audio content of {duration_ms(audio)}ms is already shorter than {end_ms}ms",
                "audio_end_ms",
            )
        self._audio[item["id"]] = audio[: end_ms * BYTES_PER_MS]
        if item["content"]:  # still empty while the response is being generated
            item["content"][0]["transcript"] = ""  # the service drops the transcript rather than realigning it
        self.emit("conversation.item.truncated", item_id=item["id"], content_index=0, audio_end_ms=end_ms)

    async def _item_delete(self, event: dict[str, Any]) -> None:
        item = self._find(event.get("item_id"))
        self.items.remove(item)
        self._audio.pop(item["id"], None)
        self.emit("conversation.item.deleted", item_id=item["id"])

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self._response is not None:
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise ProtocolError("invalid_type", "Invalid type for 'response': expected an object.", "response")
        self._start_response(options)

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if self._response is None or (wanted is not None and wanted != self._response.id):
            raise ProtocolError("response_cancel_not_active", "Cancellation failed: no active response found.")
        self._response.cancel_reason = "client_cancelled"

    async def _output_audio_clear(self, event: dict[str, Any]) -> None:
        raise ProtocolError("invalid_value", "output_audio_buffer.clear is only supported for WebRTC and SIP.", "type")

    # -- responses ---------------------------------------------------------------------------------------------

    def _start_response(self, options: dict[str, Any]) -> None:
        run = _ResponseRun(new_id("resp"))
        self._response = run
        run.task = self._spawn(self._respond(run, options), "emulator-response")

    async def _respond(self, run: _ResponseRun, options: dict[str, Any]) -> None:
        modalities = options.get("output_modalities") or self.config["output_modalities"]
        output_audio = self.config["audio"]["output"]
        response: dict[str, Any] = {
            "id": run.id,
            "object": "realtime.response",
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": self.conversation_id,
            "output_modalities": modalities,
            "max_output_tokens": options.get("max_output_tokens", self.config["max_output_tokens"]),
            "audio": {"output": {"format": output_audio["format"], "voice": output_audio["voice"]}},
            "usage": None,
            "metadata": options.get("metadata"),
        }
        self.emit("response.created", response=copy.deepcopy(response))
        output: list[dict[str, Any]] = []
        try:
            if self.server.faults.fail_responses:
                code = self.server.faults.fail_responses
                response["status"] = "failed"
                response["status_details"] = {"type": "failed", "error": {"type": code, "code": code}}
            else:
                await asyncio.gather(*self._transcriptions.values())
                reply = await self.server.brain.respond(self._context(options))
                if run.cancel_reason is None:
                    if isinstance(reply, CallFunction):
                        output.append(self._function_call(run, reply))
                    else:
                        output.append(await self._message(run, reply, modalities))
                if run.cancel_reason is not None:
                    response["status"] = "cancelled"
                    response["status_details"] = {"type": "cancelled", "reason": run.cancel_reason}
                else:
                    response["status"] = "completed"
        except Exception:
            logger.exception("Emulator brain failed")
            response["status"] = "failed"
            response["status_details"] = {"type": "failed", "error": {"type": "server_error", "code": "server_error"}}
        self._response = None
        response["output"] = [_public(item) for item in output]
        response["usage"] = self._usage(output)
        self.emit("response.done", response=response)
        used = response["usage"]["total_tokens"]
        self.emit(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {
                    "name": "tokens",
                    "limit": self.server.config.rate_limit_tokens,
                    "remaining": max(0, self.server.config.rate_limit_tokens - used),
                    "reset_seconds": 0.3,
                },
            ],
        )

    def _context(self, options: dict[str, Any]) -> BrainContext:
        last_user = next((item for item in reversed(self.items) if item.get("role") == "user"), None)
        outputs: list[dict[str, Any]] = []
        for item in reversed(self.items):
            if item["type"] != "function_call_output":
                break
            outputs.insert(0, item)
        latest_text = None
        if last_user is not None:
            part = last_user["content"][0]
            latest_text = part.get("text") if part["type"] == "input_text" else part.get("transcript")
        transcription = self.config["audio"]["input"]["transcription"] or {}
        return BrainContext(
            items=[_public(item) for item in self.items],
            tools=options.get("tools", self.config["tools"]),
            instructions=options.get("instructions", self.config["instructions"]),
            language=transcription.get("language"),
            latest_user_audio=self._audio.get(last_user["id"]) if last_user else None,
            latest_user_text=latest_text,
            function_outputs=outputs,
        )

    def _function_call(self, run: _ResponseRun, reply: CallFunction) -> dict[str, Any]:
        arguments = json.dumps(reply.arguments, ensure_ascii=False)
        item = {
            "id": new_id("item"),
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "call_id": new_id("call"),
            "name": reply.name,
            "arguments": "",
        }
        previous = self._begin_output_item(run, item)
        where = {"response_id": run.id, "item_id": item["id"], "output_index": 0, "call_id": item["call_id"]}
        for start in range(0, len(arguments), 16):
            self.emit("response.function_call_arguments.delta", delta=arguments[start : start + 16], **where)
        self.emit("response.function_call_arguments.done", arguments=arguments, name=reply.name, **where)
        item.update(arguments=arguments, status="completed")
        self._end_output_item(run, item, previous)
        return item

    async def _message(self, run: _ResponseRun, reply: Say, modalities: list[str]) -> dict[str, Any]:
        item = {
            "id": new_id("item"),
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous = self._begin_output_item(run, item)
        where = {"response_id": run.id, "item_id": item["id"], "output_index": 0, "content_index": 0}
        if modalities == ["text"]:
            self.emit("response.content_part.added", part={"type": "text", "text": ""}, **where)
            for piece in _pieces(reply.text, max(1, math.ceil(len(reply.text) / 8))):
                self.emit("response.output_text.delta", delta=piece, **where)
            self.emit("response.output_text.done", text=reply.text, **where)
            self.emit("response.content_part.done", part={"type": "text", "text": reply.text}, **where)
            item.update(status="completed", content=[{"type": "output_text", "text": reply.text}])
            self._end_output_item(run, item, previous)
            return item
        self.emit("response.content_part.added", part={"type": "audio", "transcript": ""}, **where)
        transcription = self.config["audio"]["input"]["transcription"] or {}
        audio = await self.server.brain.synthesize(reply.text, transcription.get("language"))
        self.voice_locked = True
        chunk = self.server.config.audio_chunk_ms * BYTES_PER_MS
        chunks = [audio[i : i + chunk] for i in range(0, len(audio), chunk)] or [b""]
        said, sent = [], bytearray()
        self._audio[item["id"]] = b""
        for data, piece in zip(chunks, _pieces(reply.text, len(chunks)), strict=True):
            if run.cancel_reason is not None:
                break
            if piece:
                self.emit("response.output_audio_transcript.delta", delta=piece, **where)
                said.append(piece)
            self.emit("response.output_audio.delta", delta=base64.b64encode(data).decode("ascii"), **where)
            sent += data
            self._audio[item["id"]] = bytes(sent)
            await asyncio.sleep(self.server.config.pace * duration_ms(data) / 1000)
        transcript = "".join(said)
        self.emit("response.output_audio.done", **where)
        self.emit("response.output_audio_transcript.done", transcript=transcript, **where)
        self.emit("response.content_part.done", part={"type": "audio", "transcript": transcript}, **where)
        item.update(
            status="completed" if run.cancel_reason is None else "incomplete",
            content=[{"type": "output_audio", "transcript": transcript}],
        )
        self._end_output_item(run, item, previous)
        return item

    def _begin_output_item(self, run: _ResponseRun, item: dict[str, Any]) -> str | None:
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        self.emit("response.output_item.added", response_id=run.id, output_index=0, item=_public(item))
        self.emit("conversation.item.added", item=_public(item), previous_item_id=previous)
        return previous

    def _end_output_item(self, run: _ResponseRun, item: dict[str, Any], previous: str | None) -> None:
        self.emit("response.output_item.done", response_id=run.id, output_index=0, item=_public(item))
        self.emit("conversation.item.done", item=_public(item), previous_item_id=previous)

    def _usage(self, output: list[dict[str, Any]]) -> dict[str, Any]:
        """Token usage by the cost guide's rules: input audio 10 tokens/s, output audio 20 tokens/s, text ~4 chars
        per token. The previous response's input counts as cached, as the service's prefix cache would."""
        text_in = _text_tokens(self.config["instructions"]) + _text_tokens(json.dumps(self.config["tools"]))
        audio_in = 0
        output_ids = {item["id"] for item in output}
        for item in self.items:
            if item["id"] in output_ids:
                continue
            audio = self._audio.get(item["id"])
            if audio is not None:
                audio_in += duration_ms(audio) // (100 if item.get("role") == "user" else 50)
            text_in += sum(
                _text_tokens(part.get("text") or part.get("transcript") or "") for part in item.get("content", [])
            )
            text_in += _text_tokens(item.get("arguments", "") + item.get("output", ""))
        cached_text = min(self._last_input["text"], text_in)
        cached_audio = min(self._last_input["audio"], audio_in)
        self._last_input = {"text": text_in, "audio": audio_in}
        text_out = audio_out = 0
        for item in output:
            audio = self._audio.get(item["id"])
            audio_out += duration_ms(audio) // 50 if audio else 0
            text_out += _text_tokens(item.get("arguments", "")) + sum(
                _text_tokens(part.get("text") or part.get("transcript") or "") for part in item.get("content", [])
            )
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }


_HANDLERS = {
    "session.update": EmulatorSession._session_update,
    "input_audio_buffer.append": EmulatorSession._append,
    "input_audio_buffer.commit": EmulatorSession._commit,
    "input_audio_buffer.clear": EmulatorSession._clear,
    "output_audio_buffer.clear": EmulatorSession._output_audio_clear,
    "conversation.item.create": EmulatorSession._item_create,
    "conversation.item.retrieve": EmulatorSession._item_retrieve,
    "conversation.item.truncate": EmulatorSession._item_truncate,
    "conversation.item.delete": EmulatorSession._item_delete,
    "response.create": EmulatorSession._response_create,
    "response.cancel": EmulatorSession._response_cancel,
}


def _validate_item(item: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """A client-created item with server fields filled in, or ProtocolError."""
    kind = item.get("type")
    if kind == "message":
        role = item.get("role")
        allowed = {
            "user": ("input_text", "input_audio", "input_image"),
            "system": ("input_text",),
            "assistant": ("output_text",),
        }
        if role not in allowed:
            raise ProtocolError("invalid_value", f"Invalid value: {role!r}.", "item.role")
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise ProtocolError(
                "missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content"
            )
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in allowed[role]:
                raise ProtocolError(
                    "invalid_value", f"Invalid content type for a {role} message.", f"item.content[{index}].type"
                )
    elif kind == "function_call_output":
        call_id = item.get("call_id")
        if not any(existing.get("call_id") == call_id and existing["type"] == "function_call" for existing in items):
            raise ProtocolError("invalid_value", f"No function call found with call_id {call_id!r}.", "item.call_id")
        if not isinstance(item.get("output"), str):
            raise ProtocolError("invalid_type", "Invalid type for 'item.output': expected a string.", "item.output")
    elif kind == "function_call":
        if not isinstance(item.get("name"), str) or not isinstance(item.get("arguments", ""), str):
            raise ProtocolError("invalid_value", "A function_call item needs a name and string arguments.", "item")
    else:
        raise ProtocolError(
            "invalid_value",
            f"Invalid value: {kind!r}.",
            "item.type",
        )
    return {
        "id": item.get("id") or new_id("item"),
        "object": "realtime.item",
        "status": "completed",
        **{key: copy.deepcopy(value) for key, value in item.items() if key not in ("id", "object", "status")},
    }


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of an item as the service shows it in events (audio bytes are never repeated)."""
    return copy.deepcopy(item)


def _pieces(text: str, count: int) -> list[str]:
    """`text` cut into `count` consecutive pieces (some may be empty)."""
    size = len(text)
    return [text[size * i // count : size * (i + 1) // count] for i in range(count)]


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _api_key(headers: Headers) -> str | None:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    for protocol in headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith("openai-insecure-api-key."):
            return protocol.removeprefix("openai-insecure-api-key.")
    return None


def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Any:
    return "realtime" if "realtime" in subprotocols else None


def _json_response(status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body).encode()
    return Response(
        status.value,
        status.phrase,
        Headers({"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}),
        data,
    )


def _error_response(
    status: HTTPStatus, error_type: str, code: str | None, message: str, headers: dict[str, str] | None = None
) -> Response:
    return _json_response(
        status, {"error": {"message": message, "type": error_type, "param": None, "code": code}}, headers
    )


def _handshake_fault(status: int, retry_after: int | None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None and status in (429, 503) else None
    if status == 429:
        return _error_response(
            HTTPStatus.TOO_MANY_REQUESTS,
            "requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests. Please try again later.",
            headers,
        )
    if status == 403:
        return _error_response(
            HTTPStatus.FORBIDDEN,
            "invalid_request_error",
            "unsupported_country_region_territory",
            "Country, region, or territory not supported",
        )
    if status == 401:
        return _error_response(
            HTTPStatus.UNAUTHORIZED, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."
        )
    return _error_response(
        HTTPStatus(status),
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
        headers,
    )


def _fault_error(code: str) -> ProtocolError:
    if code == "rate_limit_exceeded":
        # The top-level shape of a rate-limit error is unverified; status_details of failed responses use it.
        return ProtocolError(
            code, "Rate limit reached for gpt-realtime on tokens per min (TPM).", error_type="rate_limit_exceeded"
        )
    if code == "server_error":
        return ProtocolError(
            code, "The server had an error while processing your request. Sorry about that!", error_type="server_error"
        )
    return ProtocolError(code, "Cancellation failed: no active response found.")


def _malformed_frame(kind: str) -> str | bytes:
    if kind == "non_json":
        return '{"type": "response.output_audio.delta", "delta": '  # truncated JSON
    if kind == "missing_type":
        return json.dumps({"event_id": new_id("event"), "response": {}})
    if kind == "unknown_type":
        return json.dumps({"type": "response.hologram.delta", "event_id": new_id("event")})
    return b"\x00\x01binary"
