"""GA wire-protocol details the emulator reproduces: ids, default session, errors, `session.update` rules."""

from __future__ import annotations

import copy
import secrets
import string
from typing import Any

from ..voices import DEFAULT_REALTIME_VOICE, REALTIME_VOICES

AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a human, but remember "
    "that you aren't a human and that you can't do human things in the real world."
)
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,  # what session.created shows, although the field docs say 500
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
# The schema of `session` in a realtime `session.update`: a dict is a nested object, None a leaf value.
SESSION_SCHEMA: dict[str, Any] = {
    "type": None,
    "model": None,
    "instructions": None,
    "output_modalities": None,
    "tools": None,
    "tool_choice": None,
    "max_output_tokens": None,
    "tracing": None,
    "prompt": None,
    "include": None,
    "truncation": None,
    "parallel_tool_calls": None,
    "reasoning": None,
    "audio": {
        "input": {"format": None, "transcription": None, "noise_reduction": None, "turn_detection": None},
        "output": {"format": None, "voice": None, "speed": None},
    },
}
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id shaped like the service's (`event_…`, `item_…`, `resp_…`, `call_…`, `sess_…`).

    One read of the OS's random source per id (`secrets.choice` read it once per character, 21 system calls for
    every event the emulator sends); the modulo favours 8 of the 62 characters slightly, which an id never minds.
    """
    return f"{prefix}_" + "".join([_ALPHABET[byte % len(_ALPHABET)] for byte in secrets.token_bytes(21)])


def default_session(model: str, session_id: str, expires_at: int) -> dict[str, Any]:
    """The GA defaults a fresh session reports in `session.created`."""
    audio_format = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "expires_at": expires_at,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "include": None,
        "truncation": "auto",
        "audio": {
            "input": {
                "format": dict(audio_format),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {"format": dict(audio_format), "voice": DEFAULT_REALTIME_VOICE, "speed": 1.0},
        },
    }


class ProtocolError(Exception):
    """A client mistake the service answers with an `error` event; the session stays open."""

    def __init__(self, code: str, message: str, param: str | None = None, error_type: str = "invalid_request_error"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type

    def payload(self, client_event_id: str | None) -> dict[str, Any]:
        """The `error` object of an `error` event."""
        return {
            "type": self.error_type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": client_event_id,
        }


def _invalid_value(param: str, value: Any, supported: tuple[str, ...] | None = None) -> ProtocolError:
    message = f"Invalid value: {value!r}."
    if supported:
        message += " Supported values are: " + ", ".join(repr(s) for s in supported) + "."
    return ProtocolError("invalid_value", message, param)


def _invalid_type(param: str, expected: str) -> ProtocolError:
    return ProtocolError("invalid_type", f"Invalid type for '{param}': expected {expected}.", param)


def _check_unknown(value: dict[str, Any], schema: dict[str, Any], prefix: str) -> None:
    for key, sub in value.items():
        if key not in schema:
            raise ProtocolError("unknown_parameter", f"Unknown parameter: '{prefix}.{key}'.", f"{prefix}.{key}")
        if isinstance(schema[key], dict):
            if not isinstance(sub, dict):
                raise _invalid_type(f"{prefix}.{key}", "an object")
            _check_unknown(sub, schema[key], f"{prefix}.{key}")


def _check_format(value: Any, param: str) -> None:
    if not isinstance(value, dict):
        raise _invalid_type(param, "an object")
    if value.get("type") not in AUDIO_FORMATS:
        raise _invalid_value(f"{param}.type", value.get("type"), AUDIO_FORMATS)
    if value["type"] == "audio/pcm" and value.get("rate", 24000) != 24000:
        raise _invalid_value(f"{param}.rate", value.get("rate"), ("24000",))


def _check_turn_detection(value: Any) -> None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return
    if not isinstance(value, dict):
        raise _invalid_type(param, "an object or null")
    if value.get("type") not in ("server_vad", "semantic_vad"):
        raise _invalid_value(f"{param}.type", value.get("type"), ("server_vad", "semantic_vad"))
    threshold = value.get("threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ProtocolError(
            "decimal_out_of_range", f"Invalid '{param}.threshold': must be between 0 and 1.", f"{param}.threshold"
        )


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise _invalid_type("session.tools", "an array")
    for index, tool in enumerate(tools):
        param = f"session.tools[{index}]"
        if not isinstance(tool, dict):
            raise _invalid_type(param, "an object")
        if tool.get("type") not in ("function", "mcp"):
            raise _invalid_value(f"{param}.type", tool.get("type"), ("function", "mcp"))
        if tool["type"] == "function" and not isinstance(tool.get("name"), str):
            raise ProtocolError(
                "missing_required_parameter", f"Missing required parameter: '{param}.name'.", f"{param}.name"
            )


def validate_session_update(update: Any, *, voice_locked: bool, current_voice: Any) -> None:
    """Raise ProtocolError for the first problem in a realtime `session.update` payload (the whole event is dropped)."""
    if not isinstance(update, dict):
        raise _invalid_type("session", "an object")
    if "type" not in update:
        raise ProtocolError("missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type")
    if update["type"] == "transcription":
        raise ProtocolError(
            "invalid_value",
            "Passing a transcription session update event to a realtime session is not allowed.",
            "session.type",
        )
    if update["type"] != "realtime":
        raise _invalid_value("session.type", update["type"], ("realtime", "transcription"))
    _check_unknown(update, SESSION_SCHEMA, "session")
    if "instructions" in update and not isinstance(update["instructions"], str):
        raise _invalid_type("session.instructions", "a string")
    modalities = update.get("output_modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or len(modalities) != 1 or modalities[0] not in ("text", "audio")
    ):
        raise _invalid_value("session.output_modalities", modalities, ("['audio']", "['text']"))
    if "tools" in update:
        _check_tools(update["tools"])
    choice = update.get("tool_choice")
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        raise _invalid_value("session.tool_choice", choice, ("auto", "none", "required"))
    limit = update.get("max_output_tokens")
    if limit is not None and limit != "inf" and not (isinstance(limit, int) and 1 <= limit <= 4096):
        raise ProtocolError(
            "integer_out_of_range",
            "Invalid 'session.max_output_tokens': must be 1-4096 or 'inf'.",
            "session.max_output_tokens",
        )
    audio = update.get("audio", {})
    for direction in ("input", "output"):
        if "format" in audio.get(direction, {}):
            _check_format(audio[direction]["format"], f"session.audio.{direction}.format")
    if "turn_detection" in audio.get("input", {}):
        _check_turn_detection(audio["input"]["turn_detection"])
    output = audio.get("output", {})
    if "voice" in output:
        voice = output["voice"]
        if not (voice in REALTIME_VOICES or (isinstance(voice, dict) and isinstance(voice.get("id"), str))):
            raise _invalid_value("session.audio.output.voice", voice, REALTIME_VOICES)
        if voice_locked and voice != current_voice:
            # The exact code the service uses here is unverified.
            raise ProtocolError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
    speed = output.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 1.5:
        raise ProtocolError(
            "decimal_out_of_range",
            "Invalid 'session.audio.output.speed': must be 0.25-1.5.",
            "session.audio.output.speed",
        )


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The effective session after a valid update: only sent fields change (never the model, which the URL fixed);
    VAD defaults fill a new turn_detection."""
    merged = copy.deepcopy(current)
    _merge_into(merged, {key: value for key, value in update.items() if key != "model"}, SESSION_SCHEMA)
    detection = merged["audio"]["input"]["turn_detection"]
    if isinstance(detection, dict) and detection["type"] == "server_vad":
        merged["audio"]["input"]["turn_detection"] = {**SERVER_VAD_DEFAULTS, **detection}
    return merged


def _merge_into(target: dict[str, Any], update: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(schema.get(key), dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value, schema[key])
        else:
            target[key] = copy.deepcopy(value)
