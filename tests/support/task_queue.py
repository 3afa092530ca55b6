"""A real huey consumer for a test: the project's task queue switched from immediate mode to real storage (a
SQLite file, or Redis under a name of its own), and a consumer running its worker and scheduler threads.

On exit the consumer's threads are stopped and joined, the storage emptied and immediate mode restored, so
nothing reaches the next test.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from huey.contrib.djhuey import HUEY
from huey.storage import RedisStorage, SqliteStorage


@contextmanager
def real_queue(storage_class: type, **storage_kwargs) -> Iterator[None]:
    """HUEY on real storage (tasks are queued, not run at once) for the duration."""
    saved = (HUEY.name, HUEY.storage_class, HUEY.storage_kwargs)
    HUEY.name = f"test-{uuid.uuid4().hex[:8]}"  # Redis keys of its own: never a running server's queue
    HUEY.storage_class, HUEY.storage_kwargs = storage_class, storage_kwargs
    HUEY.immediate = False  # creates the storage from the above
    try:
        yield
    finally:
        HUEY.storage.flush_all()
        HUEY.storage.close()
        HUEY.name, HUEY.storage_class, HUEY.storage_kwargs = saved
        HUEY.immediate = True


def sqlite_queue(path: str):
    """The queue in a SQLite file, as a one-process deployment keeps it."""
    return real_queue(SqliteStorage, filename=path)


def redis_queue(url: str):
    """The queue in Redis, as several workers share it."""
    return real_queue(RedisStorage, url=url)


@contextmanager
def running_consumer(*, periodic: bool = False) -> Iterator[None]:
    """huey's consumer (one worker thread and the scheduler) in this process, as `manage.py run_huey` runs it."""
    consumer = HUEY.create_consumer(
        workers=1, worker_type="thread", periodic=periodic, initial_delay=0.01, max_delay=0.05
    )
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    consumer.start()
    for signum, handler in handlers.items():  # the consumer's are for a process of its own, not pytest
        signal.signal(signum, handler)
    try:
        yield
    finally:
        consumer.stop(graceful=True)
        assert not consumer.scheduler.is_alive()
        assert not any(worker.is_alive() for _, worker in consumer.worker_threads)
