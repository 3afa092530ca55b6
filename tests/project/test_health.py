"""Liveness, readiness, the cached upstream probe behind the health check, and process metrics in /metrics."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtime.emulator import EmulatorServer
from reception_project import health
from tests.support.live_server import LiveServer, free_port

HEALTH_CHECK = "/api/v1/realtime/health-check"


@pytest.fixture(autouse=True)
def nothing_else_configured(settings):
    """Readiness as a test process has it: no Redis, speech models loaded at first use."""
    settings.REDIS_URL = ""
    settings.SPEECH_WARM_UP = False


@pytest.fixture
def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


async def test_two_calls_within_the_interval_make_one_handshake(settings, monkeypatch):
    async with EmulatorServer() as upstream:
        settings.REALTIME_API_URL = upstream.url
        first = await asyncio.to_thread(health.upstream_probe)
        second = await asyncio.to_thread(health.upstream_probe)
        assert first.reachable and first.detail == "session.created" and first.latency_ms is not None
        assert second == first and upstream.handshakes == 1
        monkeypatch.setattr(health, "PROBE_INTERVAL_SECONDS", 0.0)  # the interval is what saved the second one
        third = await asyncio.to_thread(health.upstream_probe)
        assert third.reachable and upstream.handshakes == 2
        # open, session.created, close: the probe never configures the session nor asks for a response
        assert not upstream.received


@pytest.mark.django_db
def test_health_check_reports_an_unreachable_upstream_and_readiness(client, settings, closed_port):
    settings.REALTIME_API_URL = f"ws://127.0.0.1:{closed_port}/v1/realtime"
    body = client.get(HEALTH_CHECK).json()
    assert body["status"] == "healthy" and body["ready"] is True  # Legacy serves without the upstream
    assert body["upstream"]["reachable"] is False and body["upstream"]["detail"] == "refused"
    assert body["upstream"]["latency_ms"] is None and body["upstream"]["age_seconds"] >= 0
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"] == {"ok": True, "detail": "not configured"}
    assert body["checks"]["speech"] == {"ok": True, "detail": "loaded at first use"}
    assert str(closed_port) not in json.dumps(body)  # no addresses for an anonymous caller


@pytest.mark.django_db
def test_readiness_is_503_when_redis_is_down(client, settings, closed_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False and body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"]
    assert client.get(HEALTH_CHECK).json()["ready"] is False


@pytest.mark.django_db
def test_readiness_waits_for_the_speech_engines(client, settings, monkeypatch):
    settings.SPEECH_WARM_UP = True
    loading = type("Engines", (), {"warm": False})()
    monkeypatch.setattr(health, "legacy_engines", lambda: loading)
    response = client.get("/health/ready")
    assert response.status_code == 503 and response.json()["checks"]["speech"] == {"ok": False, "detail": "loading"}
    loading.warm = True
    assert client.get("/health/ready").status_code == 200


def test_liveness_does_no_io(client, monkeypatch):
    """No django_db mark, so a database access would fail; and no socket may connect (Redis, the upstream)."""

    def no_network(*args, **kwargs):
        raise AssertionError("liveness opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    response = client.get("/health/live")
    assert response.status_code == 200 and response.json() == {"status": "alive"}


def test_a_worker_without_its_database_is_alive_but_not_ready(tmp_path, closed_port):
    server = LiveServer(f"postgres://postgres@127.0.0.1:{closed_port}/reception", tmp_path, {"REDIS_URL": ""})
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/health/live", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/health/ready", timeout=10)
        assert refused.value.code == 503
        body = json.loads(refused.value.read())
        assert body["checks"]["database"]["ok"] is False and body["checks"]["redis"]["ok"] is True
    finally:
        server.stop()


@pytest.mark.django_db
def test_prometheus_serves_the_process_memory_and_cpu(admin_client):
    text = admin_client.get("/metrics").content.decode()
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["process_resident_memory_bytes"] > 10 * 2**20
    assert samples["process_cpu_seconds_total"] > 0
