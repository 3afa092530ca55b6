"""One emulated Realtime session: its event handlers, the input buffer with its VAD, and the writer that sends
server events through the fault knobs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .audio import BYTES_PER_MS, duration_ms, rms
from .faults import fault_error, malformed_frame
from .protocol import ProtocolError, default_session, merge_session, new_id, validate_session_update
from .responses import ResponseRun, public, text_tokens
from .validation import (
    appended_audio,
    check_commit,
    created_item,
    parse_event,
    response_options,
    truncated_end_ms,
)

if TYPE_CHECKING:
    from .server import EmulatorServer

VAD_FRAME_MS = 20
VAD_LEVEL_PER_THRESHOLD = 0.05  # RMS level (0-1) that counts as speech is threshold x this factor
_POKE = object()


@dataclass
class _Close:
    code: int
    reason: str = ""


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
        self.audio: dict[str, bytes] = {}  # item id -> its audio (user input, assistant output)
        self.transcriptions: dict[str, asyncio.Task[None]] = {}
        self.response: ResponseRun | None = None
        self.cut_items: set[str] = set()  # assistant items truncated before their end (barge-in)
        self._respond_next = False  # the VAD ended a turn during a response: answer it once that response ends
        self.last_input: dict[str, int] = {"text": 0, "audio": 0}  # the last response's input tokens
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
        self._is_speech = server.brain.speech_detector()

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
            tasks = [writer, expiry, *self._tasks, *self.transcriptions.values()]
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

    def transcription_language(self) -> str | None:
        """The language the client set for input transcription (None: not set)."""
        return (self.config["audio"]["input"]["transcription"] or {}).get("language")

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
            await self.connection.send(malformed_frame(faults.malformed))
        if faults.error_code and "error" not in self._fired and count >= faults.error_after_events:
            self._fired.add("error")
            if faults.error_code == "session_expired":
                self.expire()
            else:
                self._send_error(fault_error(faults.error_code))
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
        try:
            event = parse_event(message)
        except ProtocolError as error:
            self._send_error(error)
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
        self._buffer += appended_audio(event)
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection is not None:
            self._run_vad(detection)

    async def _commit(self, event: dict[str, Any]) -> None:
        audio = bytes(self._buffer)
        check_commit(audio)
        item_id = self._speech_item or new_id("item")
        self._reset_buffer()
        self._commit_audio(item_id, audio)

    async def _clear(self, event: dict[str, Any]) -> None:
        self._reset_buffer()
        self.emit("input_audio_buffer.cleared")

    async def _output_audio_clear(self, event: dict[str, Any]) -> None:
        raise ProtocolError("invalid_value", "output_audio_buffer.clear is only supported for WebRTC and SIP.", "type")

    async def _item_create(self, event: dict[str, Any]) -> None:
        self._add_item(*created_item(event, self.items))

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        item = public(self._find(event.get("item_id")))
        audio = self.audio.get(item["id"])
        if audio is not None and item.get("content"):
            item["content"][0]["audio"] = base64.b64encode(audio).decode("ascii")
        self.emit("conversation.item.retrieved", item=item)

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        item = self._find(event.get("item_id"))
        end_ms = truncated_end_ms(event, item, self.audio.get(item["id"]))
        if end_ms < duration_ms(self.audio[item["id"]]) or item["status"] != "completed":
            self.cut_items.add(item["id"])
        self.audio[item["id"]] = self.audio[item["id"]][: end_ms * BYTES_PER_MS]
        if item["content"]:  # still empty while the response is being generated
            item["content"][0]["transcript"] = ""  # the service drops the transcript rather than realigning it
        self.emit("conversation.item.truncated", item_id=item["id"], content_index=0, audio_end_ms=end_ms)

    async def _item_delete(self, event: dict[str, Any]) -> None:
        item = self._find(event.get("item_id"))
        self.items.remove(item)
        self.audio.pop(item["id"], None)
        self.emit("conversation.item.deleted", item_id=item["id"])

    async def _response_create(self, event: dict[str, Any]) -> None:
        self._start_response(response_options(event, self.response.id if self.response else None))

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if self.response is None or (wanted is not None and wanted != self.response.id):
            raise ProtocolError("response_cancel_not_active", "Cancellation failed: no active response found.")
        self.response.cancel_reason = "client_cancelled"

    # -- the conversation --------------------------------------------------------------------------------------

    def _start_response(self, options: dict[str, Any]) -> None:
        run = ResponseRun(self, options)
        self.response = run
        run.task = self._spawn(run.run(), "emulator-response")

    def response_ended(self) -> None:
        """The active response is done: start the one a turn ended during it asked for."""
        if self._respond_next and self.response is None:
            self._respond_next = False
            self._start_response({})

    def _add_item(self, item: dict[str, Any], previous_item_id: str | None) -> None:
        if previous_item_id is None:
            self.items.insert(0, item)
        else:
            index = next(i for i, existing in enumerate(self.items) if existing["id"] == previous_item_id)
            self.items.insert(index + 1, item)
        self.emit("conversation.item.added", item=public(item), previous_item_id=previous_item_id)
        self.emit("conversation.item.done", item=public(item), previous_item_id=previous_item_id)

    def _find(self, item_id: Any) -> dict[str, Any]:
        for item in self.items:
            if item["id"] == item_id:
                return item
        # The exact code the service uses for an unknown item id is unverified.
        raise ProtocolError("item_not_found", f"Item with item_id not found: {item_id}", "item_id")

    # -- the input buffer --------------------------------------------------------------------------------------

    def _run_vad(self, detection: dict[str, Any]) -> None:
        """The VAD over whole 20 ms frames not yet analysed: the brain's speech detector (a stand-in for the
        service's model), else the frames' energy."""
        frame_bytes = VAD_FRAME_MS * BYTES_PER_MS
        level = detection.get("threshold", 0.5) * VAD_LEVEL_PER_THRESHOLD
        while len(self._buffer) - self._vad_pos >= frame_bytes:
            frame = bytes(self._buffer[self._vad_pos : self._vad_pos + frame_bytes])
            frame_start = self._buffer_start_ms + self._vad_pos // BYTES_PER_MS
            self._vad_pos += frame_bytes
            speaking = self._is_speech(frame) if self._is_speech else rms(frame) >= level
            if self._speech_item is None and speaking:
                self._start_speech(frame_start, detection)
            elif self._speech_item is not None:
                self._silence_ms = 0 if speaking else self._silence_ms + VAD_FRAME_MS
                if self._silence_ms >= detection.get("silence_duration_ms", 200):
                    self._end_speech(frame_start + VAD_FRAME_MS, detection)

    def _start_speech(self, frame_start: int, detection: dict[str, Any]) -> None:
        self._speech_item = new_id("item")
        padding = detection.get("prefix_padding_ms", 300)
        self._speech_start_ms = max(self._buffer_start_ms, frame_start - padding)
        self._silence_ms = 0
        self.emit("input_audio_buffer.speech_started", audio_start_ms=self._speech_start_ms, item_id=self._speech_item)
        if detection.get("interrupt_response", True) and self.response is not None:
            self.response.cancel_reason = "turn_detected"

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
        if detection.get("create_response", True):
            if self.response is None:
                self._start_response({})
            else:
                self._respond_next = True

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
        self.audio[item_id] = audio
        self._add_item(item, previous)
        self.transcriptions[item_id] = self._spawn(self._transcribe(item, audio), "emulator-transcribe")

    async def _transcribe(self, item: dict[str, Any], audio: bytes) -> None:
        transcript = await self.server.brain.transcribe(audio, self.transcription_language())
        item["content"][0]["transcript"] = transcript
        if self.config["audio"]["input"]["transcription"] is not None:
            audio_tokens = max(1, duration_ms(audio) // 100)
            output_tokens = text_tokens(transcript)
            self.emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item["id"],
                content_index=0,
                transcript=transcript,
                usage={
                    "type": "tokens",
                    "input_tokens": audio_tokens,
                    "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
                    "output_tokens": output_tokens,
                    "total_tokens": audio_tokens + output_tokens,
                },
            )


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
