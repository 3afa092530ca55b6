"""`deploy/serve.py` run from the tests and the load test: N uvicorn workers behind nginx with TLS, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.live_server import REPO, free_port, wait_for_port
from tests.support.processes import child_pids


def load_serve():
    """`deploy/serve.py` as a module (it is a script, not in a package), for tests of its functions."""
    spec = importlib.util.spec_from_file_location("deploy_serve", REPO / "deploy" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tls_without_verification() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is self-signed, made by serve.py
    return context


def start_serve(env: dict[str, str], workers: int, port: int, run_dir: Path, log: Path) -> subprocess.Popen:
    """The supervisor in a process group of its own (so nothing it started can outlive the caller)."""
    command = [sys.executable, "deploy/serve.py", "--workers", str(workers), "--port", str(port)]
    command += ["--worker-port-base", "0", "--run-dir", str(run_dir)]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_everything(serve: subprocess.Popen) -> None:
    """SIGTERM, as an operator would; the whole process group if the supervisor does not end in time."""
    if serve.poll() is None:
        serve.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            serve.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(serve.pid, signal.SIGKILL)  # anything left in the group the caller started


def worker_ports(run_dir: Path) -> list[int]:
    return [int(p) for p in re.findall(r"server 127\.0\.0\.1:(\d+)", (run_dir / "nginx.conf").read_text())]


def children_running(serve: subprocess.Popen, marker: bytes) -> list[int]:
    """The supervisor's children whose command line holds `marker`."""
    pids = []
    for pid in child_pids(serve.pid):
        with contextlib.suppress(OSError):  # ended meanwhile
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return sorted(pids)


def worker_pids(serve: subprocess.Popen) -> list[int]:
    """The supervisor's workers (its children running uvicorn)."""
    return children_running(serve, b"uvicorn")


@dataclass
class Fleet:
    """Where the kiosks connect (through nginx), and the workers behind it."""

    url: str
    pids: list[int]
    ssl: ssl.SSLContext | None  # None: plain ws:// to one worker
    group: int | None = None  # the supervisor's process group: everything on the server's side


@contextmanager
def serving(env: dict[str, str], workers: int, directory: Path) -> Iterator[Fleet]:
    """`workers` workers behind nginx until the block ends; everything started is gone afterwards."""
    port, log = free_port(), directory / "serve.log"
    serve = start_serve(env, workers, port, directory / "serve", log)
    try:
        wait_for_port(port, 240, serve, log)  # nginx starts once every worker is ready
        yield Fleet(f"wss://127.0.0.1:{port}/ws/kiosk/", worker_pids(serve), tls_without_verification(), serve.pid)
    finally:
        stop_everything(serve)
