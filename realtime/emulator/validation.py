"""Validation of client events and items, raising `ProtocolError` with the service's codes and messages.

Pure functions: an event (and what they must be checked against) goes in, a value or a ProtocolError comes out.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from typing import Any

from .audio import BYTES_PER_MS, duration_ms
from .protocol import ProtocolError, new_id

MAX_APPEND_BYTES = 15 * 1024 * 1024
MIN_COMMIT_MS = 100
_MESSAGE_CONTENT = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text",),
}


def parse_event(message: str | bytes) -> dict[str, Any]:
    """A client frame as an event object (its `type` is checked by the session's dispatch)."""
    if isinstance(message, bytes):
        raise ProtocolError("invalid_event", "Binary frames are not supported; send JSON text.")
    try:
        event = json.loads(message)
    except ValueError:
        raise ProtocolError("invalid_json", "The event could not be parsed as JSON.") from None
    if not isinstance(event, dict):
        raise ProtocolError("invalid_event", "The event must be a JSON object.")
    return event


def appended_audio(event: dict[str, Any]) -> bytes:
    """The PCM16 bytes of an `input_audio_buffer.append`."""
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise ProtocolError("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
    try:
        pcm = base64.b64decode(audio, validate=True)
    except binascii.Error as exc:
        raise ProtocolError("invalid_value", "Invalid 'audio': not valid base64.", "audio") from exc
    if len(pcm) > MAX_APPEND_BYTES:
        raise ProtocolError("string_above_max_length", "Invalid 'audio': at most 15 MiB per append.", "audio")
    return pcm


def check_commit(audio: bytes) -> None:
    """An `input_audio_buffer.commit` needs at least MIN_COMMIT_MS of audio in the buffer."""
    if duration_ms(audio) < MIN_COMMIT_MS:
        raise ProtocolError(
            "input_audio_buffer_commit_empty",
            "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
            f"but buffer only has {len(audio) / BYTES_PER_MS:.2f}ms of audio.",
        )


def created_item(event: dict[str, Any], items: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """The item of a `conversation.item.create` with server fields filled in, and the id of the item it follows."""
    item = event.get("item")
    if not isinstance(item, dict):
        raise ProtocolError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
    item = validate_item(item, items)
    previous = event.get("previous_item_id")
    if previous == "root":
        previous = None
    elif previous is None:
        previous = items[-1]["id"] if items else None
    elif not any(existing["id"] == previous for existing in items):
        raise ProtocolError("invalid_value", f"Invalid 'previous_item_id': {previous} not found.", "previous_item_id")
    return item, previous


def validate_item(item: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """A client-created item with server fields filled in, or ProtocolError."""
    kind = item.get("type")
    if kind == "message":
        _check_message(item)
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
        raise ProtocolError("invalid_value", f"Invalid value: {kind!r}.", "item.type")
    return {
        "id": item.get("id") or new_id("item"),
        "object": "realtime.item",
        "status": "completed",
        **{key: copy.deepcopy(value) for key, value in item.items() if key not in ("id", "object", "status")},
    }


def _check_message(item: dict[str, Any]) -> None:
    role = item.get("role")
    if role not in _MESSAGE_CONTENT:
        raise ProtocolError("invalid_value", f"Invalid value: {role!r}.", "item.role")
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise ProtocolError("missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content")
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _MESSAGE_CONTENT[role]:
            raise ProtocolError(
                "invalid_value", f"Invalid content type for a {role} message.", f"item.content[{index}].type"
            )


def truncated_end_ms(event: dict[str, Any], item: dict[str, Any], audio: bytes | None) -> int:
    """Where a `conversation.item.truncate` cuts `item`'s audio (`audio`: None when the item has none)."""
    if item.get("role") != "assistant" or audio is None:
        raise ProtocolError("invalid_value", "Only assistant messages with audio can be truncated.", "item_id")
    if event.get("content_index") != 0:
        raise ProtocolError("invalid_value", "Invalid 'content_index': must be 0.", "content_index")
    end_ms = event.get("audio_end_ms")
    if not isinstance(end_ms, int) or end_ms < 0:
        raise ProtocolError("invalid_type", "Invalid 'audio_end_ms': expected a non-negative integer.", "audio_end_ms")
    if end_ms > duration_ms(audio):
        raise ProtocolError(
            "invalid_value",
            f"Audio content of {duration_ms(audio)}ms is already shorter than {end_ms}ms",
            "audio_end_ms",
        )
    return end_ms


def response_options(event: dict[str, Any], active_response_id: str | None) -> dict[str, Any]:
    """The options of a `response.create`; only one response may be active at a time."""
    if active_response_id is not None:
        raise ProtocolError(
            "conversation_already_has_active_response",
            f"Conversation already has an active response in progress: {active_response_id}. "
            "Wait until the response is finished before creating a new one.",
        )
    options = event.get("response") or {}
    if not isinstance(options, dict):
        raise ProtocolError("invalid_type", "Invalid type for 'response': expected an object.", "response")
    return options
