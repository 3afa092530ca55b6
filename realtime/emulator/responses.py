"""One response of an emulated session: the brain's reply streamed as the service streams it, then its usage."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import math
from typing import TYPE_CHECKING, Any

from .audio import BYTES_PER_MS, duration_ms
from .brain import BrainContext, CallFunction, Say
from .protocol import new_id

if TYPE_CHECKING:
    from .session import EmulatorSession

logger = logging.getLogger(__name__)


class ResponseRun:
    """A response from `response.created` to `response.done`; `cancel_reason` set from outside stops it early."""

    def __init__(self, session: EmulatorSession, options: dict[str, Any]) -> None:
        self.session = session
        self.options = options
        self.id = new_id("resp")
        self.modalities: list[str] = options.get("output_modalities") or session.config["output_modalities"]
        self.task: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None

    async def run(self) -> None:
        session = self.session
        response = self._created()
        session.emit("response.created", response=copy.deepcopy(response))
        output: list[dict[str, Any]] = []
        try:
            status, details = await self._generate(output)
        except Exception:
            logger.exception("Emulator brain failed")
            status, details = "failed", {"type": "failed", "error": {"type": "server_error", "code": "server_error"}}
        session.response = None
        response.update(status=status, status_details=details, output=[public(item) for item in output])
        response["usage"] = usage(session, output)
        session.emit("response.done", response=response)
        limit = session.server.config.rate_limit_tokens
        session.emit(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {
                    "name": "tokens",
                    "limit": limit,
                    "remaining": max(0, limit - response["usage"]["total_tokens"]),
                    "reset_seconds": 0.3,
                },
            ],
        )
        session.response_ended()

    def _created(self) -> dict[str, Any]:
        """The response as `response.created` shows it."""
        config = self.session.config
        output_audio = config["audio"]["output"]
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": self.session.conversation_id,
            "output_modalities": self.modalities,
            "max_output_tokens": self.options.get("max_output_tokens", config["max_output_tokens"]),
            "audio": {"output": {"format": output_audio["format"], "voice": output_audio["voice"]}},
            "usage": None,
            "metadata": self.options.get("metadata"),
        }

    async def _generate(self, output: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
        """Stream the brain's reply into `output`; the response's status and status details."""
        session = self.session
        code = session.server.faults.fail_responses
        if code:
            return "failed", {"type": "failed", "error": {"type": code, "code": code}}
        await asyncio.gather(*session.transcriptions.values())
        reply = await session.server.brain.respond(self._context())
        if self.cancel_reason is None:
            if isinstance(reply, CallFunction):
                output.append(self._function_call(reply))
            else:
                output.append(await self._message(reply))
        if self.cancel_reason is not None:
            return "cancelled", {"type": "cancelled", "reason": self.cancel_reason}
        return "completed", None

    def _context(self) -> BrainContext:
        session = self.session
        outputs: list[dict[str, Any]] = []
        for item in reversed(session.items):
            if item["type"] != "function_call_output":
                break
            outputs.insert(0, item)
        return BrainContext(
            items=[public(item) for item in session.items],
            tools=self.options.get("tools", session.config["tools"]),
            instructions=self.options.get("instructions", session.config["instructions"]),
            language=session.transcription_language(),
            user_texts=unanswered_user_texts(session.items, session.cut_items),
            function_outputs=outputs,
        )

    def _function_call(self, reply: CallFunction) -> dict[str, Any]:
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
        previous = self._begin_output_item(item)
        where = {"response_id": self.id, "item_id": item["id"], "output_index": 0, "call_id": item["call_id"]}
        emit = self.session.emit
        for start in range(0, len(arguments), 16):
            emit("response.function_call_arguments.delta", delta=arguments[start : start + 16], **where)
        emit("response.function_call_arguments.done", arguments=arguments, name=reply.name, **where)
        item.update(arguments=arguments, status="completed")
        self._end_output_item(item, previous)
        return item

    async def _message(self, reply: Say) -> dict[str, Any]:
        item = {
            "id": new_id("item"),
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous = self._begin_output_item(item)
        where = {"response_id": self.id, "item_id": item["id"], "output_index": 0, "content_index": 0}
        if self.modalities == ["text"]:
            self._text(reply.text, where)
            item.update(status="completed", content=[{"type": "output_text", "text": reply.text}])
        else:
            transcript = await self._audio(reply.text, item["id"], where)
            item.update(
                status="completed" if self.cancel_reason is None else "incomplete",
                content=[{"type": "output_audio", "transcript": transcript}],
            )
        self._end_output_item(item, previous)
        return item

    def _text(self, text: str, where: dict[str, Any]) -> None:
        emit = self.session.emit
        emit("response.content_part.added", part={"type": "text", "text": ""}, **where)
        for piece in pieces(text, max(1, math.ceil(len(text) / 8))):
            emit("response.output_text.delta", delta=piece, **where)
        emit("response.output_text.done", text=text, **where)
        emit("response.content_part.done", part={"type": "text", "text": text}, **where)

    async def _audio(self, text: str, item_id: str, where: dict[str, Any]) -> str:
        """Stream the speech of `text` with its transcript (until cancelled); the transcript of what was sent."""
        session, emit = self.session, self.session.emit
        emit("response.content_part.added", part={"type": "audio", "transcript": ""}, **where)
        audio = await session.server.brain.synthesize(text, session.transcription_language())
        session.voice_locked = True
        chunk = session.server.config.audio_chunk_ms * BYTES_PER_MS
        chunks = [audio[i : i + chunk] for i in range(0, len(audio), chunk)] or [b""]
        said, sent = [], bytearray()
        session.audio[item_id] = b""
        for data, piece in zip(chunks, pieces(text, len(chunks)), strict=True):
            if self.cancel_reason is not None:
                break
            if piece:
                emit("response.output_audio_transcript.delta", delta=piece, **where)
                said.append(piece)
            emit("response.output_audio.delta", delta=base64.b64encode(data).decode("ascii"), **where)
            sent += data
            session.audio[item_id] = bytes(sent)
            await asyncio.sleep(session.server.config.pace * duration_ms(data) / 1000)
        transcript = "".join(said)
        emit("response.output_audio.done", **where)
        emit("response.output_audio_transcript.done", transcript=transcript, **where)
        emit("response.content_part.done", part={"type": "audio", "transcript": transcript}, **where)
        return transcript

    def _begin_output_item(self, item: dict[str, Any]) -> str | None:
        items = self.session.items
        previous = items[-1]["id"] if items else None
        items.append(item)
        self.session.emit("response.output_item.added", response_id=self.id, output_index=0, item=public(item))
        self.session.emit("conversation.item.added", item=public(item), previous_item_id=previous)
        return previous

    def _end_output_item(self, item: dict[str, Any], previous: str | None) -> None:
        self.session.emit("response.output_item.done", response_id=self.id, output_index=0, item=public(item))
        self.session.emit("conversation.item.done", item=public(item), previous_item_id=previous)


def unanswered_user_texts(items: list[dict[str, Any]], cut: set[str]) -> list[str]:
    """The user items' texts after the last completed reply (a function call, or an assistant message that was
    neither cancelled nor truncated by `conversation.item.truncate`), oldest first."""
    texts: list[str] = []
    for item in reversed(items):
        if item["type"] == "function_call" or (
            item.get("role") == "assistant" and item.get("status") == "completed" and item["id"] not in cut
        ):
            break
        if item.get("role") == "user" and item.get("content"):
            part = item["content"][0]
            text = part.get("text") if part["type"] == "input_text" else part.get("transcript")
            texts.insert(0, text or "")
    return texts


def usage(session: EmulatorSession, output: list[dict[str, Any]]) -> dict[str, Any]:
    """Token usage by the cost guide's rules: input audio 10 tokens/s, output audio 20 tokens/s, text ~4 chars
    per token. The previous response's input counts as cached, as the service's prefix cache would."""
    text_in = text_tokens(session.config["instructions"]) + text_tokens(json.dumps(session.config["tools"]))
    audio_in = 0
    output_ids = {item["id"] for item in output}
    for item in session.items:
        if item["id"] in output_ids:
            continue
        audio = session.audio.get(item["id"])
        if audio is not None:
            audio_in += duration_ms(audio) // (100 if item.get("role") == "user" else 50)
        text_in += _content_tokens(item) + text_tokens(item.get("arguments", "") + item.get("output", ""))
    cached_text = min(session.last_input["text"], text_in)
    cached_audio = min(session.last_input["audio"], audio_in)
    session.last_input = {"text": text_in, "audio": audio_in}
    text_out = audio_out = 0
    for item in output:
        audio = session.audio.get(item["id"])
        audio_out += duration_ms(audio) // 50 if audio else 0
        text_out += text_tokens(item.get("arguments", "")) + _content_tokens(item)
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


def _content_tokens(item: dict[str, Any]) -> int:
    return sum(text_tokens(part.get("text") or part.get("transcript") or "") for part in item.get("content", []))


def public(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of an item as the service shows it in events (audio bytes are never repeated)."""
    return copy.deepcopy(item)


def pieces(text: str, count: int) -> list[str]:
    """`text` cut into `count` consecutive pieces (some may be empty)."""
    size = len(text)
    return [text[size * i // count : size * (i + 1) // count] for i in range(count)]


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)
