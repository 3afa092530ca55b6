"""Run a benchmark's worker process against a fresh, migrated database (a SQLite file or a throwaway PostgreSQL
database, dropped afterwards), as a server would use it: Django set up once in that process, its log to a file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.support.live_server import REPO, database_env, migrated_postgres, migrated_sqlite

KINDS = ("sqlite", "postgres")


def run_worker(kind: str, directory: Path, argv: list[str], env: dict[str, str] | None = None) -> dict:
    """Migrate a fresh database of ``kind``, run ``python argv...`` on it, and return the JSON of its last line
    of output, with ``migrate_s`` and ``run_s`` added."""
    started = time.perf_counter()
    if kind == "sqlite":
        return _run(migrated_sqlite(directory), argv, env, directory / "sqlite.log", started)
    with migrated_postgres() as url:
        return _run(url, argv, env, directory / "postgres.log", started)


def _run(url: str, argv: list[str], env: dict[str, str] | None, log: Path, started: float) -> dict:
    migrated = time.perf_counter()
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=REPO,
            env=database_env(url, env),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=600,
        )
    if done.returncode != 0:
        raise SystemExit(f"the worker failed:\n{log.read_text()[-3000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {**results, "migrate_s": migrated - started, "run_s": time.perf_counter() - migrated}
