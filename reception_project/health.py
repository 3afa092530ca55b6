"""Health you can act on: liveness, readiness and the Realtime upstream's reachability.

Liveness (``/health/live``): the process answers; no I/O at all. Readiness (``/health/ready``, 503 when not
ready): the database answers, Redis answers when ``REDIS_URL`` is set (channel layer, cache and rate-limit
counters all live there), and the speech engines are loaded when ``SPEECH_WARM_UP`` is on. The Realtime upstream
is not part of readiness, since sessions take the Legacy path without it; its reachability comes from a WebSocket
handshake (open, read ``session.created``, close: no response is ever created, so no tokens are spent), made at
most once per ``PROBE_INTERVAL_SECONDS`` per process, callers meanwhile sharing the last result.
``/api/v1/realtime/health-check`` (no login) reports all of it without host names, URLs or error texts.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from fallback.config import load_emergency
from fallback.guards import load_guard_snapshots
from fallback.models import GuardStatus
from metrics.alerts import active_alerts
from metrics.serializers import ErrorSerializer
from realtime.client import EMULATOR_API_KEY
from speech.engines import legacy_engines

PROBE_INTERVAL_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 3.0
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Probe:
    """One handshake with the upstream. `detail`: session.created, refused, timeout, tls, http NNN, closed, ..."""

    reachable: bool
    detail: str
    latency_ms: int | None
    checked_at: float  # time.time()

    def report(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "detail": self.detail,
            "latency_ms": self.latency_ms,
            "checked_at": datetime.fromtimestamp(self.checked_at, UTC),
            "age_seconds": round(time.time() - self.checked_at, 1),
        }


_probe_lock = threading.Lock()
_probes: dict[str, tuple[float, Probe]] = {}  # by upstream URL: (monotonic time of the handshake, its result)


def upstream_probe() -> Probe:
    """The last handshake with REALTIME_API_URL, made now if the last one is older than PROBE_INTERVAL_SECONDS.

    Callers arriving during a handshake wait for it (at most PROBE_TIMEOUT_SECONDS) and share its result."""
    url = settings.REALTIME_API_URL
    with _probe_lock:
        cached = _probes.get(url)
        if cached is not None and time.monotonic() - cached[0] < PROBE_INTERVAL_SECONDS:
            return cached[1]
        started = time.monotonic()
        probe = _handshake(url) if url else Probe(False, "not configured", None, time.time())
        _probes[url] = (started, probe)
        return probe


def _handshake(url: str) -> Probe:
    target = f"{url}?{urlencode({'model': settings.REALTIME_MODEL})}"
    headers = {"Authorization": f"Bearer {settings.OPENAI_API_KEY or EMULATOR_API_KEY}"}
    started = time.monotonic()
    try:
        with connect(target, additional_headers=headers, open_timeout=PROBE_TIMEOUT_SECONDS, close_timeout=1) as ws:
            event = json.loads(ws.recv(timeout=PROBE_TIMEOUT_SECONDS))
        detail = str(event.get("type")) if isinstance(event, dict) else "unexpected"
    except InvalidStatus as exc:
        detail = f"http {exc.response.status_code}"
    except TimeoutError:
        detail = "timeout"
    except ssl.SSLError:
        detail = "tls"
    except ConnectionRefusedError:
        detail = "refused"
    except (ConnectionClosed, InvalidHandshake):
        detail = "closed"
    except (OSError, ValueError) as exc:  # name resolution, reset, a frame that is not JSON
        detail = type(exc).__name__
    latency_ms = round((time.monotonic() - started) * 1000)
    reachable = detail == "session.created"
    return Probe(reachable, detail, latency_ms if reachable else None, time.time())


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"ok": False, "detail": type(exc).__name__}
    return {"ok": True, "detail": connection.vendor}


def _redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "detail": "not configured"}
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"ok": False, "detail": type(exc).__name__}
    finally:
        client.close()
    return {"ok": True, "detail": "answered"}


def _speech() -> dict[str, Any]:
    if not settings.SPEECH_WARM_UP:
        return {"ok": True, "detail": "loaded at first use"}
    try:
        warm = legacy_engines().warm
    except ValueError:  # LEGACY_ENGINES names no usable engines
        return {"ok": False, "detail": "misconfigured"}
    return {"ok": warm, "detail": "loaded" if warm else "loading"}


def readiness() -> dict[str, dict[str, Any]]:
    """Each dependency a worker needs before it takes visitors: {"ok": bool, "detail": str}."""
    return {"database": _database(), "redis": _redis(), "speech": _speech()}


def is_ready(checks: dict[str, dict[str, Any]]) -> bool:
    return all(check["ok"] for check in checks.values())


@require_GET
@never_cache
def live_view(request: HttpRequest) -> JsonResponse:
    """GET /health/live: the process answers. No database, cache or network."""
    return JsonResponse({"status": "alive"})


@require_GET
@never_cache
def ready_view(request: HttpRequest) -> JsonResponse:
    """GET /health/ready: 200 when every readiness check passes, else 503 (for a proxy or an orchestrator)."""
    checks = readiness()
    ready = is_ready(checks)
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class ChecksSerializer(serializers.Serializer):
    database = CheckSerializer()
    redis = CheckSerializer()
    speech = CheckSerializer()


class UpstreamSerializer(serializers.Serializer):
    reachable = serializers.BooleanField()
    detail = serializers.CharField()
    latency_ms = serializers.IntegerField(allow_null=True)
    checked_at = serializers.DateTimeField()
    age_seconds = serializers.FloatField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded"])
    ready = serializers.BooleanField()
    checks = ChecksSerializer()
    upstream = UpstreamSerializer()


class HealthCheckView(APIView):
    """No login. status: healthy when the database answers, no emergency, no guard open and no alert raised
    (503 when the database does not answer); ready and checks as /health/ready; upstream from the cached probe."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="healthy or degraded, readiness and the upstream's reachability (no login)",
        responses={200: HealthSerializer, 429: ErrorSerializer, 503: HealthSerializer},
    )
    def get(self, request: Request) -> Response:
        checks = readiness()
        body = {"ready": is_ready(checks), "checks": checks, "upstream": upstream_probe().report()}
        try:
            emergency = load_emergency()
            guards = load_guard_snapshots().values()
            alerts = active_alerts()
        except DatabaseError:
            return Response(HealthSerializer({"status": "degraded", **body}).data, status=503)
        degraded = emergency.active or alerts or any(g.state != GuardStatus.CLOSED for g in guards)
        return Response(HealthSerializer({"status": "degraded" if degraded else "healthy", **body}).data)
