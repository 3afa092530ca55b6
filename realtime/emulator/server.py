"""A local `websockets` server that speaks the OpenAI Realtime GA protocol: the handshake (keys, the model, handshake
faults), the fire-drill endpoint, and one `EmulatorSession` per accepted connection."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..redact import redacted_logger
from .brain import Brain, ScriptedBrain
from .faults import DRILL_PATH, Faults, parse_fault
from .session import EmulatorSession
from .validation import MAX_APPEND_BYTES

logger = logging.getLogger(__name__)


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

    async def __aexit__(self, *_exc_info: object) -> None:
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
