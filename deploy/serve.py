"""`make serve`: N uvicorn workers behind nginx (TLS, the kiosk socket's upgrade, /health), one command.

    deploy/serve.py --workers 2 --host 127.0.0.1 --port 8000 [--emulator]
    deploy/serve.py --wait-ready 8001      # only wait until the worker on 127.0.0.1:8001 is ready (systemd)
    deploy/serve.py --alone --host 127.0.0.1 --port 8000   # one worker, no proxy (`make run`)

Each worker is uvicorn on its own 127.0.0.1 port; several workers share their state through PostgreSQL
(DATABASE_URL) and Redis (REDIS_URL), which this script insists on for more than one. nginx listens on
HOST:PORT with a self-signed certificate made once into the run folder (data/serve/ unless --run-dir), from
deploy/nginx.conf.template. One task-queue consumer (`manage.py run_huey`: host notifications, the daily purges,
the rollout autopilot) runs beside them. A worker or the consumer that exits is started again. SIGHUP
(`make serve-reload`) restarts the workers one at a time, each new one ready (/health/ready) before the next goes,
while nginx sends requests to the others, and the consumer after its tasks in flight. SIGINT (Ctrl-C) or SIGTERM
stops nginx, the workers, the consumer (gracefully) and the emulator, and this script ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess  # nosec B404  # only our own interpreter, uvicorn, openssl and nginx, fixed argv
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
READY_TIMEOUT_SECONDS = 180.0
# nginx leaves a worker that failed a request alone this long (max_fails=1): a rolling restart waits as long after
# each worker is ready again, or nginx would still count it out while the next one restarts, and answer 502.
NGINX_FAIL_TIMEOUT_SECONDS = 5
STOP_TIMEOUT_SECONDS = 10.0
LOG_TAIL_LINES = 20  # of a worker's log, in the message when it does not start
WORKER_PORT_BASE = 8001  # worker i (1..N) on 127.0.0.1:8000+i; the systemd units use the same ports
ASGI_APPLICATION = "reception_project.asgi:application"


# uvicorn with the sans-I/O websockets protocol, uvloop and httptools: the kiosk socket's frames cost a worker ~1.6x
# less CPU than under daphne (benchmarks/relay_capacity.py; docs/deploy.md). Channels has no lifespan protocol. No
# access log: the request line can carry a kiosk pairing token. A frame over 1 MiB closes the socket (1009); a
# SIGTERM closes the kiosk sockets with 1012, and the kiosks reconnect to another worker.
SERVER_OPTIONS = (
    "--ws",
    "websockets-sansio",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--lifespan",
    "off",
    "--no-access-log",
    "--ws-max-size",
    "1048576",
    "--timeout-graceful-shutdown",
    "5",
)


def worker_command(port: int, bind: str = "127.0.0.1", *, behind_proxy: bool = True) -> list[str]:
    """One worker's command line; docs/deploy.md's systemd unit, Dockerfile and compose file run the same one
    (tests/project/test_deploy_files.py checks them against this). Behind the proxy only the proxy may reach `bind`:
    the worker believes the X-Forwarded-For and X-Forwarded-Proto of whoever connects (on 127.0.0.1, of 127.0.0.1;
    in a container, of anyone on its network). Alone (`make run`), it believes none."""
    trusted = "127.0.0.1" if bind == "127.0.0.1" else "*"
    proxy = ("--proxy-headers", "--forwarded-allow-ips", trusted) if behind_proxy else ("--no-proxy-headers",)
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        bind,
        "--port",
        str(port),
        *SERVER_OPTIONS,
        *proxy,
        ASGI_APPLICATION,
    ]


def readiness(port: int) -> tuple[bool, str]:
    """Whether the worker on 127.0.0.1:port answers 200 on /health/ready (database, Redis, speech engines), and
    what it answered (its checks) or why it did not."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health/ready", headers={"X-Forwarded-Proto": "https"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # nosec B310  # http://127.0.0.1
            return response.status == 200, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:  # 503: a check failed, and its body says which
        return False, f"{error.code} {error.read().decode(errors='replace')}"
    except OSError as error:  # not listening (yet), or no answer within the timeout
        return False, str(error)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log, for a message that says why something did not start."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(unreadable: {error})"


def wait_ready(port: int, timeout: float = READY_TIMEOUT_SECONDS) -> int:
    """`--wait-ready PORT`: 0 once the worker on 127.0.0.1:PORT is ready, 1 after `timeout` seconds (the systemd
    worker unit's ExecStartPost, so `systemctl restart` of one worker returns only once it can serve)."""
    deadline = time.monotonic() + timeout
    while True:
        ready, answer = readiness(port)
        if ready:
            return 0
        if time.monotonic() > deadline:
            log(f"the worker on 127.0.0.1:{port} is not ready after {timeout:.0f} s; /health/ready: {answer[:1000]}")
            return 1
        time.sleep(0.5)


def log(message: str) -> None:
    print(f"serve: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Signal `process` and wait for it; SIGKILL after STOP_TIMEOUT_SECONDS."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_command(args: list[str], log_path: Path) -> subprocess.Popen:
    """`manage.py ARGS` with its output appended to `log_path`."""
    with log_path.open("ab") as out:
        return subprocess.Popen(  # noqa: S603  # nosec B603  # our manage.py, fixed argv
            [sys.executable, "manage.py", *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )


class TaskConsumer:
    """The task queue's one consumer (`manage.py run_huey`, huey): its output goes to task-consumer.log."""

    def __init__(self, run_dir: Path) -> None:
        self.log = run_dir / "task-consumer.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = start_command(["run_huey"], self.log)

    def keep_running(self) -> None:
        """Start it again if it exited."""
        if self.process is not None and self.process.poll() is not None:
            log(f"task consumer exited ({self.process.returncode}); starting it again")
            self.start()

    def reload(self) -> None:
        """huey restarts in place on SIGHUP once its tasks in flight are done (new code, same queue)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """SIGINT: huey's graceful stop (the task in flight finishes; queued ones wait in the queue)."""
        stop(self.process, signal.SIGINT)


class Worker:
    """One worker process on 127.0.0.1:port; its output goes to the run folder's worker-N.log."""

    def __init__(self, number: int, port: int, run_dir: Path) -> None:
        self.number, self.port, self.log = number, port, run_dir / f"worker-{number}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603  # nosec B603  # our own interpreter, fixed argv
                worker_command(self.port), cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self) -> None:
        """Until /health/ready answers 200; a RuntimeError that says why not (the worker's last answer and the end
        of its log) once it exits or READY_TIMEOUT_SECONDS pass."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            ready, answer = readiness(self.port)
            if ready:
                return
            if self.process is None or self.process.poll() is not None:
                why = f"exited ({None if self.process is None else self.process.returncode})"
            elif time.monotonic() > deadline:
                why = f"not ready after {READY_TIMEOUT_SECONDS:.0f} s; /health/ready: {answer[:1000]}"
            else:
                time.sleep(0.5)
                continue
            raise RuntimeError(f"worker {self.number} {why}; {self.log} ends:\n{log_tail(self.log)}")

    def restart(self) -> None:
        stop(self.process)
        self.start()
        self.wait_ready()


def check_shared_state(workers: int) -> None:
    """More than one worker needs PostgreSQL and Redis: flags, guards, stops, counters and the channel layer."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
    sys.path.insert(0, str(REPO))
    from django.conf import settings  # the project's settings, read as the workers will read them
    from django.db import connection

    if workers > 1 and (connection.vendor == "sqlite" or not settings.REDIS_URL):
        sys.exit("serve: several workers share PostgreSQL and Redis: set DATABASE_URL=postgres://... and REDIS_URL")


def make_certificate(run_dir: Path, host: str) -> None:
    """A self-signed certificate for HOST, 127.0.0.1 and localhost, made once (the key readable by us only)."""
    if (run_dir / "tls.crt").exists() and (run_dir / "tls.key").exists():
        return
    names = {"IP:127.0.0.1", "DNS:localhost"}
    names.add(f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}")
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-days", "825", "-subj", f"/CN={host}", "-addext", f"subjectAltName={','.join(sorted(names))}"]
    old_umask = os.umask(0o077)
    try:
        subprocess.run(  # noqa: S603  # nosec B603  # openssl, fixed argv
            [*command, "-keyout", str(run_dir / "tls.key"), "-out", str(run_dir / "tls.crt")],
            check=True,
            capture_output=True,
        )
    finally:
        os.umask(old_umask)
    log(f"made a self-signed certificate: {run_dir / 'tls.crt'}")


def write_nginx_conf(run_dir: Path, host: str, port: int, workers: list[Worker]) -> Path:
    fail = f"max_fails=1 fail_timeout={NGINX_FAIL_TIMEOUT_SECONDS}s"
    servers = "\n".join(f"        server 127.0.0.1:{w.port} {fail};" for w in workers)
    text = TEMPLATE.read_text()
    for name, value in {"RUN_DIR": str(run_dir), "HOST": host, "PORT": str(port), "UPSTREAM_SERVERS": servers}.items():
        text = text.replace(f"@{name}@", value)
    (run_dir / "nginx-temp").mkdir(exist_ok=True)
    path = run_dir / "nginx.conf"
    path.write_text(text)
    return path


class Stop(Exception):
    """SIGINT or SIGTERM: leave what we are doing and stop everything."""


reload_requested = False


def on_signal(signum: int, _frame: object) -> None:
    global reload_requested
    if signum == signal.SIGHUP:
        reload_requested = True
    else:
        raise Stop


def rolling_restart(workers: list[Worker]) -> None:
    """One worker at a time, the next only once the new one is ready and nginx sends to it again: the others serve
    meanwhile."""
    for number, worker in enumerate(workers, 1):
        log(f"restarting worker {worker.number} (127.0.0.1:{worker.port})")
        try:
            worker.restart()
        except RuntimeError as exc:
            log(f"the rolling restart stops here, the other workers keep their processes: {exc}")
            return
        if number < len(workers):
            time.sleep(NGINX_FAIL_TIMEOUT_SECONDS)
    log("every worker restarted")


def supervise(workers: list[Worker], nginx: subprocess.Popen, consumer: TaskConsumer) -> None:
    """Until SIGINT/SIGTERM: restart a worker or the consumer that exited, and all of them on SIGHUP."""
    global reload_requested
    while True:
        if nginx.poll() is not None:
            raise RuntimeError(f"nginx exited ({nginx.returncode}); see nginx-error.log")
        if reload_requested:
            reload_requested = False
            consumer.reload()
            rolling_restart(workers)
        for worker in workers:
            if worker.process is not None and worker.process.poll() is not None:
                log(f"worker {worker.number} exited ({worker.process.returncode}); starting it again")
                worker.start()
        consumer.keep_running()
        time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--host", default="127.0.0.1", help="where nginx listens (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="nginx's HTTPS port")
    parser.add_argument(
        "--worker-port-base", type=int, default=WORKER_PORT_BASE, help="workers on BASE+0..N-1; 0: free ports"
    )
    parser.add_argument("--run-dir", type=Path, default=REPO / "data" / "serve")
    parser.add_argument("--emulator", action="store_true", help="also run the bundled Realtime emulator")
    parser.add_argument("--wait-ready", type=int, metavar="PORT", help="only wait until that worker is ready")
    parser.add_argument("--alone", action="store_true", help="only run one worker on HOST:PORT, no proxy (make run)")
    args = parser.parse_args()
    if args.wait_ready:
        return wait_ready(args.wait_ready)
    if args.alone:
        command = worker_command(args.port, args.host, behind_proxy=False)
        os.execv(command[0], command)  # noqa: S606  # nosec B606  # our own interpreter, fixed argv
    if shutil.which("nginx") is None:
        sys.exit("serve: nginx is not installed (Debian: apt-get install nginx-light)")
    check_shared_state(args.workers)
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    make_certificate(run_dir, args.host)
    ports = [args.worker_port_base + i if args.worker_port_base else free_port() for i in range(args.workers)]
    workers = [Worker(number, port, run_dir) for number, port in enumerate(ports, 1)]
    conf = write_nginx_conf(run_dir, args.host, args.port, workers)
    (run_dir / "serve.pid").write_text(f"{os.getpid()}\n")
    emulator = nginx = None
    consumer = TaskConsumer(run_dir)
    try:
        if args.emulator:
            port = os.environ.get("REALTIME_EMULATOR_PORT", "8765")
            emulator = start_command(
                ["realtime_emulator", "--port", port, "--brain", "reception"], run_dir / "emulator.log"
            )
        consumer.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        command = ["nginx", "-p", str(run_dir), "-e", str(run_dir / "nginx-error.log"), "-c", str(conf)]
        nginx = subprocess.Popen(command)  # noqa: S603  # nosec B603  # nginx, fixed argv
        log(f"https://{args.host}:{args.port}/kiosk/ -> workers on 127.0.0.1:{', '.join(map(str, ports))}")
        log(f"logs in {run_dir}; `make serve-reload` (SIGHUP) restarts the workers one at a time; Ctrl-C stops")
        supervise(workers, nginx, consumer)
    except Stop:
        log("stopping")
    except RuntimeError as exc:
        log(str(exc))
        return 1
    finally:
        stop(nginx, signal.SIGQUIT)  # graceful: finish the requests in flight
        for process in [w.process for w in workers] + [emulator]:
            stop(process)
        consumer.stop()
        (run_dir / "serve.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
