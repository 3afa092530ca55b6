"""Fault injection: the knobs a drill or a test turns, and the faulty events and frames they produce."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .protocol import ProtocolError, new_id

HANDSHAKE_FAULTS = (401, 403, 429, 500, 502, 503)
CLOSE_FAULTS = (1001, 1006, 1011, 1012, 1013, 1008, 4000)
ERROR_FAULTS = ("rate_limit_exceeded", "session_expired", "server_error", "response_cancel_not_active")
MALFORMED_FAULTS = ("non_json", "missing_type", "unknown_type", "binary")
DRILL_PATH = "/v1/realtime/_faults"


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


def fault_error(code: str) -> ProtocolError:
    """The `error` event of the `error_code` fault (other than `session_expired`, which the session sends itself)."""
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


def malformed_frame(kind: str) -> str | bytes:
    """The frame of the `malformed` fault."""
    if kind == "non_json":
        return '{"type": "response.output_audio.delta", "delta": '  # truncated JSON
    if kind == "missing_type":
        return json.dumps({"event_id": new_id("event"), "response": {}})
    if kind == "unknown_type":
        return json.dumps({"type": "response.hologram.delta", "event_id": new_id("event")})
    return b"\x00\x01binary"
