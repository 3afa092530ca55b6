"""`deploy/serve.py` waiting for a worker: once it gives up, it says what `/health/ready` answered and how the
worker's log ends, so whoever runs `make serve` (or `systemctl restart`) sees why without hunting for files."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.serve_fleet import load_serve

serve = load_serve()
NOT_READY = {"ready": False, "checks": {"speech": {"ok": False, "detail": "speech engines still loading"}}}


@pytest.fixture
def health():
    """A stand-in worker on 127.0.0.1 whose /health/ready answers `health.status` with `health.body`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # http.server calls it by this name
            body = json.dumps(server.body).encode()
            self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status, server.body = 503, NOT_READY
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def worker(health, tmp_path, monkeypatch):
    """serve.py's Worker on the stand-in's port, its process a sleeper, its log 30 numbered lines."""
    monkeypatch.setattr(serve, "READY_TIMEOUT_SECONDS", 1.0)
    worker = serve.Worker(1, health.server_address[1], tmp_path)
    worker.log.write_text("".join(f"log line {n:02d}\n" for n in range(1, 31)))
    worker.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield worker
    worker.process.kill()
    worker.process.wait(timeout=10)


def test_a_worker_that_never_gets_ready_is_reported_with_its_failing_check_and_its_log(worker):
    with pytest.raises(RuntimeError) as raised:
        worker.wait_ready()
    message = str(raised.value)
    assert "worker 1 not ready after 1 s" in message
    assert "503" in message and "speech engines still loading" in message
    assert "log line 30" in message and "log line 11" in message and "log line 10" not in message  # the last 20


def test_a_worker_that_exits_is_reported_with_its_status_and_its_log(worker):
    worker.process.kill()
    worker.process.wait(timeout=10)
    with pytest.raises(RuntimeError) as raised:
        worker.wait_ready()
    assert "worker 1 exited (-9)" in str(raised.value) and "log line 30" in str(raised.value)


def test_a_ready_worker_is_waited_for_no_longer(worker, health):
    health.status, health.body = 200, {"ready": True, "checks": {}}
    worker.wait_ready()  # returns at once, well within the second


def test_the_systemd_wait_says_what_the_worker_answered(health, capsys):
    assert serve.wait_ready(health.server_address[1], timeout=1.0) == 1
    output = capsys.readouterr().out
    assert "not ready after 1 s" in output
    assert "speech engines still loading" in output
