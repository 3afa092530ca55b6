"""A helper process beside each server process for the conversation's bookkeeping.

Pricing each Realtime response into the rolling hour and writing the metrics writer's batches is ORM work:
Python between short queries, which holds the interpreter's lock while the event loop waits for it to relay
audio (docs/deploy.md, "Where the time over the bare relay goes"). With ``BOOKKEEPING_PROCESS`` on, ``call``
and ``call_async`` run such a function in one helper process per server process instead (spawned on first use,
Django set up there on this process's databases), one call at a time in the order they came, so a session's
start, turns and end are written in order. A call the helper cannot take (it died, or this interpreter is
shutting down) runs here instead, so nothing is lost; an exception raised in the helper is raised here.
A call the helper died in is run again here: a metrics batch dedupes its rows, a spend record may then count
one response twice (more against the hourly limit, never less).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections, connection

from .blocking import run_blocking

logger = logging.getLogger(__name__)
T = TypeVar("T")

PARENT_CHECK_SECONDS = 1.0
_helper: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def _set_up(databases: dict[str, Any]) -> None:
    """In the helper: Django on the server process's databases (under pytest, its test databases), and a watch
    that ends the helper with its server process (a killed server would otherwise leave it running)."""
    import django

    parent = os.getppid()
    threading.Thread(target=_end_with, args=(parent,), name="bookkeeping-parent-watch", daemon=True).start()
    settings.DATABASES = databases
    settings.BOOKKEEPING_PROCESS = False  # a helper has no helper of its own
    django.setup()


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _run(func: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In the helper: one call, its connection tidied as for a request (a broken one is replaced next time)."""
    close_old_connections()
    try:
        return func(*args)
    except Exception:
        connection.close()
        raise


def _submit(func: Callable[..., T], args: tuple[Any, ...]) -> tuple[Future[T], ProcessPoolExecutor] | None:
    """The call queued in the helper, or None when it runs here (helper off, broken, or this process exiting)."""
    global _helper
    if not settings.BOOKKEEPING_PROCESS:
        return None
    with _lock:
        try:
            if _helper is None:
                _helper = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),  # never fork a process that runs threads
                    initializer=_set_up,
                    initargs=(settings.DATABASES,),
                )
            return _helper.submit(_run, func, args), _helper
        except BrokenProcessPool as exc:
            logger.warning("bookkeeping helper unavailable (%s); %s runs in this process", exc, func.__name__)
        except RuntimeError:  # the interpreter is exiting: no new processes, and the flush at exit runs here
            logger.info("bookkeeping helper stopped with the process; %s runs in this process", func.__name__)
        _helper = None
        return None


def _forget(helper: ProcessPoolExecutor, exc: BaseException, func: Callable[..., Any]) -> None:
    """The helper died (killed, out of memory): this call runs here, the next one starts a new helper."""
    global _helper
    logger.error("bookkeeping helper died (%s); %s runs in this process", exc, func.__name__)
    with _lock:
        if _helper is helper:
            _helper = None


def call(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in the helper process, waiting for its result (from a thread, not the event loop)."""
    if (queued := _submit(func, args)) is not None:
        future, helper = queued
        try:
            return future.result()
        except BrokenProcessPool as exc:
            _forget(helper, exc, func)
    close_old_connections()
    return func(*args)


async def call_async(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in the helper process, awaited (from the event loop)."""
    if (queued := _submit(func, args)) is not None:
        future, helper = queued
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            _forget(helper, exc, func)
    return await run_blocking(func)(*args)


def stop() -> None:
    """End the helper after the calls it holds (the next call starts a new one)."""
    global _helper
    with _lock:
        helper, _helper = _helper, None
    if helper is not None:
        helper.shutdown(wait=True)
