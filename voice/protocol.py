"""The kiosk socket's message format: parsing and validation of the frames a kiosk sends.

Everything here is pure: a frame goes in, a `KioskMessage` or a `ProtocolError` comes out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from core.session_ids import SESSION_ID_PATTERN
from realtime.kiosk import ProtocolError

LANGUAGES = ("ja", "en")
CLIENT_MESSAGE_TYPES = (
    "session.start",
    "input_audio.append",
    "input_audio.commit",
    "input_text",
    "response.cancel",
    "session.end",
    "feedback",
)
RATINGS = (1, 2, 3)  # the one-tap satisfaction answer: unhappy, neutral, happy


@dataclass(frozen=True)
class KioskMessage:
    """A validated control frame from the kiosk."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_text_frame(raw: str) -> KioskMessage:
    """Validate one JSON text frame from the kiosk, raising ProtocolError with a clear code."""
    if len(raw.encode()) > settings.KIOSK_MAX_FRAME_BYTES:
        raise ProtocolError("frame_too_large", f"Frames are limited to {settings.KIOSK_MAX_FRAME_BYTES} bytes.")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ProtocolError("invalid_json", "Text frames must be JSON objects.") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "Text frames must be JSON objects with a 'type'.")
    message_type = data.get("type")
    if not isinstance(message_type, str) or not message_type:
        raise ProtocolError("invalid_message", "The message has no 'type'.")
    if message_type not in CLIENT_MESSAGE_TYPES:
        raise ProtocolError("unknown_type", f"Unknown message type {message_type[:40]!r}.")
    validate = _VALIDATORS.get(message_type)
    return KioskMessage(message_type, validate(data) if validate else {})


def _validate_session_start(data: dict[str, Any]) -> dict[str, Any]:
    session_id = data.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not SESSION_ID_PATTERN.match(session_id)):
        raise ProtocolError("invalid_session_id", "session_id must be 1–64 characters of A-Z, a-z, 0-9, '_' or '-'.")
    language = data.get("language", "ja")
    if language not in LANGUAGES:
        raise ProtocolError("invalid_language", "language must be 'ja' or 'en'.")
    voice = data.get("voice", False)
    if not isinstance(voice, bool):
        raise ProtocolError("invalid_message", "voice must be true or false.")
    return {"session_id": session_id, "language": language, "voice": voice}


def _validate_input_text(data: dict[str, Any]) -> dict[str, Any]:
    text = data.get("text")
    if not isinstance(text, str):
        raise ProtocolError("invalid_text", "input_text needs a 'text' string.")
    text = text.strip()
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape such as "\ud800"
        raise ProtocolError("invalid_text", "text must be valid Unicode.") from None
    if not text:
        raise ProtocolError("invalid_text", "input_text needs a non-empty 'text'.")
    if len(text) > settings.KIOSK_MAX_TEXT_CHARS:
        raise ProtocolError("text_too_long", f"text is limited to {settings.KIOSK_MAX_TEXT_CHARS} characters.")
    return {"text": text}


def _validate_audio_append(data: dict[str, Any]) -> dict[str, Any]:
    audio = data.get("audio")
    if not isinstance(audio, str) or not audio:
        raise ProtocolError("invalid_audio", "input_audio.append needs 'audio' as base64 PCM16.")
    return {"audio": audio}


def _validate_feedback(data: dict[str, Any]) -> dict[str, Any]:
    session_id = data.get("session_id")
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.match(session_id):
        raise ProtocolError("invalid_session_id", "feedback needs the session_id of this session.")
    rating = data.get("rating")
    if type(rating) is not int or rating not in RATINGS:
        raise ProtocolError("invalid_rating", "rating must be 1, 2 or 3.")
    return {"session_id": session_id, "rating": rating}


_VALIDATORS = {
    "session.start": _validate_session_start,
    "input_text": _validate_input_text,
    "input_audio.append": _validate_audio_append,
    "feedback": _validate_feedback,
}
