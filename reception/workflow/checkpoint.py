"""The workflow's checkpointer: one per process, created lazily, in the database the project uses.

SQLite deployments keep checkpoints in Django's database file (WAL, busy timeout), or in their own file when
settings.WORKFLOW_CHECKPOINT_PATH is set; PostgreSQL deployments keep them in the same database through a
psycopg pool. Either way a fresh database never resumes conversations of an old one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from langgraph.checkpoint.base import BaseCheckpointSaver

_BUSY_TIMEOUT_MS = 20_000
_SETUP_LOCK_KEY = 0x7265_6365_7074  # "recept": the PostgreSQL advisory lock of the checkpoint tables' set-up
_SETUP_LOCK_POLL_SECONDS = 0.1
_lock = threading.Lock()
_saver: BaseCheckpointSaver | None = None
_close: Callable[[], None] | None = None


def get_checkpointer() -> BaseCheckpointSaver:
    """The process's checkpointer, created and set up on first use (thread-safe)."""
    global _saver, _close
    with _lock:
        if _saver is None:
            _saver, _close = _create()
        return _saver


def reset_checkpointer() -> None:
    """Close and forget the checkpointer; the next call creates a new one (tests, simulated restarts)."""
    global _saver, _close
    with _lock:
        if _close is not None:
            _close()
        _saver, _close = None, None


def _create() -> tuple[BaseCheckpointSaver, Callable[[], None]]:
    database = settings.DATABASES["default"]
    if "postgresql" in database["ENGINE"]:
        return _create_postgres(database)
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(settings.WORKFLOW_CHECKPOINT_PATH or database["NAME"])
    path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False is safe: SqliteSaver serialises access with its own lock.
    conn = sqlite3.connect(path, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")
    saver = SqliteSaver(conn)
    saver.setup()
    return saver, conn.close


def _create_postgres(database: dict) -> tuple[BaseCheckpointSaver, Callable[[], None]]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.conninfo import make_conninfo
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    conninfo = make_conninfo(
        dbname=database.get("NAME") or "",
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=database.get("HOST") or None,
        port=str(database["PORT"]) if database.get("PORT") else None,
    )
    pool = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=10,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    saver = PostgresSaver(pool)
    # LangGraph's migrations (CREATE TABLE IF NOT EXISTS, ...) are not safe to run at once: two workers starting
    # on a fresh database failed one of them with UniqueViolation, and its warm-up never loaded the speech engines.
    # A session lock makes the processes take turns; it is released when its connection closes. It is polled: a
    # process blocked inside pg_advisory_lock holds a snapshot that the migrations' CREATE INDEX CONCURRENTLY
    # waits for, and neither would ever move.
    with psycopg.connect(conninfo, autocommit=True) as lock:
        while not lock.execute("SELECT pg_try_advisory_lock(%s)", (_SETUP_LOCK_KEY,)).fetchone()[0]:
            time.sleep(_SETUP_LOCK_POLL_SECONDS)
        saver.setup()
    return saver, pool.close
