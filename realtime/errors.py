"""What can go wrong with a Realtime session, as exceptions a fallback manager can act on."""

from __future__ import annotations

import ssl
from typing import Any

from openai.types.websocket_reconnection import is_recoverable_close
from websockets.exceptions import ConnectionClosed, InvalidStatus

# Error codes after which the service closes the session.
FATAL_ERROR_CODES = frozenset({"session_expired", "beta_api_shape_disabled"})
NOT_RETRYABLE_STATUS = frozenset({400, 401, 403, 404})


class RealtimeError(Exception):
    """Base class. `fatal`: this session cannot go on. `retryable`: a new session may well succeed."""

    fatal: bool = True
    retryable: bool = True


class RealtimeConnectionError(RealtimeError):
    """No usable connection. `reason`: refused, timeout, tls, reset, handshake, closed or stalled."""

    def __init__(self, message: str, *, reason: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


class RealtimeHandshakeError(RealtimeConnectionError):
    """The HTTP upgrade was refused with `status` (401/403 are final; 429 and 5xx are transient)."""

    def __init__(self, status: int, *, retry_after: float | None = None) -> None:
        super().__init__(
            f"Realtime handshake rejected with HTTP {status}",
            reason="handshake",
            retryable=status not in NOT_RETRYABLE_STATUS,
        )
        self.status = status
        self.retry_after = retry_after


class RealtimeClosedError(RealtimeConnectionError):
    """The service closed the socket, or it dropped (1006), while the session was in use."""

    def __init__(self, close_code: int, close_reason: str = "") -> None:
        super().__init__(
            f"Realtime connection closed unexpectedly ({close_code} {close_reason})".rstrip(),
            reason="closed",
            retryable=is_recoverable_close(close_code),
        )
        self.close_code = close_code
        self.close_reason = close_reason


class RealtimeUpstreamError(RealtimeError):
    """An `error` event, or a `response.done` with status `failed`. Only FATAL_ERROR_CODES end the session."""

    def __init__(
        self,
        code: str | None,
        message: str = "",
        *,
        error_type: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(f"Realtime error {code}: {message}")
        self.code = code
        self.error_type = error_type
        self.param = param
        self.event_id = event_id
        self.fatal = code in FATAL_ERROR_CODES
        self.retryable = code != "beta_api_shape_disabled"


def upstream_error(event: dict[str, Any]) -> RealtimeUpstreamError:
    error = event.get("error") or {}
    return RealtimeUpstreamError(
        error.get("code"),
        error.get("message", ""),
        error_type=error.get("type"),
        param=error.get("param"),
        event_id=error.get("event_id"),
    )


def connect_error(exc: BaseException) -> RealtimeError | None:
    """A connect-time failure as a RealtimeError, or None for what must propagate (cancellation)."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        retry_after = response.headers.get("Retry-After")
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        return RealtimeHandshakeError(response.status_code, retry_after=seconds)
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        return RealtimeClosedError(frame.code if frame else 1006, frame.reason if frame else "")
    if isinstance(exc, TimeoutError):
        return RealtimeConnectionError("Realtime connect timed out", reason="timeout")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RealtimeConnectionError(f"TLS verification failed: {exc.verify_message}", reason="tls", retryable=False)
    if isinstance(exc, ConnectionRefusedError):
        return RealtimeConnectionError("Realtime connection refused", reason="refused")
    if isinstance(exc, Exception):
        return RealtimeConnectionError(f"Realtime connect failed: {type(exc).__name__}: {exc}", reason="reset")
    return None
