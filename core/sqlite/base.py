"""Django's SQLite backend, with the write transactions of one process queued in the process, not in SQLite.

Every `transaction.atomic()` on SQLite begins with `BEGIN IMMEDIATE` (settings: the database's write lock is
taken up front). When it is taken, SQLite's busy handler makes the waiter sleep and try again, sleeping longer
each time (1, 2, 5, 10 … up to 100 ms), so a lock freed after 3 ms is taken again up to 100 ms later. When many
sessions open at once, each writing a few short transactions, the lock then stands free most of the time while
every thread sleeps. Here a thread first waits for the process's writer turn (a `threading.Lock`, handed over as
soon as it is released) and only then begins; it gives its turn back when the transaction ends (commit,
rollback or close). Writers of other processes (a `manage.py` command) and the workflow's checkpointer, which
has a connection of its own, still meet at SQLite's lock and its busy timeout, as before.
"""

from __future__ import annotations

import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

_WRITER_TURN = threading.Lock()  # one write transaction of this process at a time


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite, with `BEGIN IMMEDIATE` taken in turn by the threads of this process."""

    _holds_writer_turn = False

    def _start_transaction_under_autocommit(self) -> None:
        # Waits as long as SQLite's busy timeout would, and fails as SQLite would.
        if not _WRITER_TURN.acquire(timeout=self.settings_dict["OPTIONS"].get("timeout", 5)):
            raise OperationalError("database is locked (another write transaction of this process held on)")
        self._holds_writer_turn = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._give_back_writer_turn()
            raise

    def _set_autocommit(self, autocommit: bool) -> None:
        try:
            super()._set_autocommit(autocommit)
        finally:
            if autocommit:  # the end of `atomic()`'s outermost block, once committed or rolled back
                self._give_back_writer_turn()

    def _close(self) -> None:
        try:
            super()._close()  # a transaction still open is rolled back by SQLite
        finally:
            self._give_back_writer_turn()

    def _give_back_writer_turn(self) -> None:
        if self._holds_writer_turn:
            self._holds_writer_turn = False
            _WRITER_TURN.release()
