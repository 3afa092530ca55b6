"""A real server process (`make run`'s uvicorn worker) on 127.0.0.1 over a throw-away database, for end-to-end
tests and benchmarks."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None, log: Path | None = None):
    """Until something listens on 127.0.0.1:port; fails early if `process` exits."""

    def listening() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log.read_text() if log else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_until(listening, within=timeout, interval=0.1, what=f"something listening on port {port}")


@contextmanager
def throwaway_database(kind: str, directory: Path):
    """A DATABASE_URL for a fresh SQLite file or a fresh PostgreSQL database, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'reception.db'}"
        return
    name = f"reception_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        _drop_database(name)


# The kiosks of a load run or a benchmark all connect from 127.0.0.1 and reconnect per conversation faster than a
# lobby's do: their server lifts the connection limits (a kiosk's frame limits stay).
CONNECTION_LIMITS_LIFTED = {
    "KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE": "1000000",
    "KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE": "1000000",
}


def database_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process (server, command, worker) that uses the given database."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "reception_project.settings",
        **(extra or {}),
    }


def run_migrate(database_url: str) -> None:
    """Create every table in the given database, as a deployment's `migrate` does."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=REPO,
        env=database_env(database_url),
        check=True,
        timeout=180,
    )


_templates: dict[str, str] = {}  # kind -> a database `migrate` made in this process, to copy


def migrate(database_url: str) -> None:
    """Every table in the given new database: a copy of one this process migrated once with `manage.py migrate`
    (a file copy for SQLite, CREATE DATABASE ... TEMPLATE for PostgreSQL), two seconds less per database."""
    kind = "sqlite" if database_url.startswith("sqlite") else "postgres"
    if kind not in _templates:
        _templates[kind] = _new_template(kind)
        run_migrate(_templates[kind])
    if kind == "sqlite":
        shutil.copyfile(_templates[kind].removeprefix("sqlite:///"), database_url.removeprefix("sqlite:///"))
        return
    name, template = database_url.rsplit("/", 1)[1], _templates[kind].rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _new_template(kind: str) -> str:
    """An empty database for a template, dropped when this process exits."""
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="reception-template-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        return f"sqlite:///{directory}/template.db"
    name = f"reception_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    atexit.register(_drop_database, name)
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_sqlite(directory: Path) -> str:
    """A migrated SQLite file database (WAL, immediate transactions, as in production)."""
    url = f"sqlite:///{directory / 'shared.db'}"
    migrate(url)
    return url


@contextmanager
def migrated_postgres() -> Iterator[str]:
    """A throwaway, migrated PostgreSQL database, dropped afterwards."""
    with throwaway_database("postgres", REPO) as url:
        migrate(url)
        yield url


def run_workers(
    script: str, database_url: str, mode: str, worker_args: list[str], env: dict | None = None
) -> list[dict]:
    """Start one `script MODE ARG` process per argument, release them together once all are ready (each
    prints "ready" when Django is set up and connected), and return their JSON results (last line each)."""
    procs = [
        subprocess.Popen(
            [sys.executable, script, mode, arg],
            cwd=REPO,
            env=database_env(database_url, env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arg in worker_args
    ]
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"worker did not start: {proc.communicate(timeout=30)[1][-2000:]}")
    for proc in procs:  # the starting gun
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}): {err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


class LiveServer:
    """One worker serving the project, as `make run` starts it; `manage()` runs commands against the same database."""

    def __init__(self, database_url: str, directory: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.env = database_env(
            database_url,
            {
                "WORKFLOW_CHECKPOINT_PATH": str(directory / "checkpoints.db"),
                "TASK_QUEUE_PATH": str(directory / "task_queue.db"),  # without Redis: the queue of this run only
                "LOG_LEVEL": "WARNING",
                **(extra_env or {}),
            },
        )
        self.process: subprocess.Popen | None = None
        self.log = directory / "server.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/kiosk/"

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def prepare(self) -> str:
        """Migrate, load the demo directory and return a new kiosk key."""
        migrate(self.env["DATABASE_URL"])
        self.manage("seed_demo")
        return self.create_kiosk()

    def create_kiosk(self) -> str:
        """A new kiosk's key."""
        return self.manage("create_kiosk", f"e2e-{uuid.uuid4().hex[:6]}").strip().splitlines()[-1]

    def spawn(self, *args: str) -> subprocess.Popen:
        """A long-running `manage.py` command (e.g. the emulator) with this server's environment and log."""
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def start(self, timeout: float = 30.0) -> None:
        command = [sys.executable, "deploy/serve.py", "--alone", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # `make run`'s worker: the script becomes uvicorn (same pid)
                command,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, timeout, self.process, self.log)

    def kill(self) -> None:
        """Stop the process the hard way, as a crash or an OOM kill would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
