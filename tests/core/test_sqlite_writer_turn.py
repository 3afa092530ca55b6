"""The SQLite backend's writer turn (`core.sqlite`): one write transaction of this process at a time, queued in the
process, and the turn given back however the transaction ends."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from core.sqlite import base
from reception.models import StaffMember

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("the writer turn is SQLite's")


def test_the_projects_sqlite_database_uses_the_writer_turn():
    assert isinstance(connections["default"], base.DatabaseWrapper)


def test_a_write_transaction_holds_the_turn_until_its_outermost_block_commits():
    with transaction.atomic():
        assert base._WRITER_TURN.locked()
        with transaction.atomic():  # a savepoint: no second turn
            StaffMember.objects.create(name="山田 太郎", email="yamada@example.com")
        assert base._WRITER_TURN.locked()
    assert not base._WRITER_TURN.locked()
    assert StaffMember.objects.filter(email="yamada@example.com").exists()


def test_the_turn_is_given_back_when_the_transaction_rolls_back():
    with pytest.raises(ValueError), transaction.atomic():
        StaffMember.objects.create(name="山田 太郎", email="yamada@example.com")
        raise ValueError
    assert not base._WRITER_TURN.locked()
    assert not StaffMember.objects.exists()


def test_the_turn_is_given_back_when_the_connection_closes_mid_transaction():
    with transaction.atomic():
        StaffMember.objects.create(name="山田 太郎", email="yamada@example.com")
        connection.close()
        assert not base._WRITER_TURN.locked()
    assert not StaffMember.objects.exists()  # SQLite rolled it back
    with transaction.atomic():  # and the next transaction gets the turn
        assert base._WRITER_TURN.locked()


def test_a_writer_of_another_thread_waits_for_the_turn_then_writes():
    inside, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with transaction.atomic():
            StaffMember.objects.create(name="一", email="first@example.com")
            inside.set()
            release.wait(10)
            order.append("first")
        connection.close()

    def second() -> None:
        inside.wait(10)
        with transaction.atomic():
            order.append("second")
            StaffMember.objects.create(name="二", email="second@example.com")
        connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    threads[1].join(0.3)
    assert threads[1].is_alive() and order == []  # the second waits for the turn, not inside a transaction
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first", "second"]
    assert StaffMember.objects.count() == 2


def test_a_writer_that_waits_longer_than_the_busy_timeout_fails_as_sqlite_would(monkeypatch):
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.1)
    base._WRITER_TURN.acquire()
    try:
        with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
            pass
    finally:
        base._WRITER_TURN.release()
    with transaction.atomic():
        assert base._WRITER_TURN.locked()
