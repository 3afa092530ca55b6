"""The consumer's message loop: two sources, one handler at a time, each source in its order, stopped by a raise."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from core.dispatch import dispatch_in_turn

session = contextvars.ContextVar("session", default=None)


class Done(Exception):
    pass


def source_of(messages: list[dict], pause: float = 0.0):
    queue = list(messages)

    async def receive() -> dict:
        await asyncio.sleep(pause)
        if not queue:
            await asyncio.Event().wait()  # nothing more, as a quiet socket
        return queue.pop(0)

    return receive


async def test_messages_are_handled_one_at_a_time_in_each_sources_order_until_a_handler_raises():
    frames = source_of([{"n": i, "from": "socket"} for i in range(50)] + [{"stop": True}])
    control = source_of([{"n": i, "from": "layer"} for i in range(5)], pause=0.001)
    handled, running = [], 0

    async def dispatch(message: dict) -> None:
        nonlocal running
        if message.get("stop"):
            raise Done
        running += 1
        assert running == 1  # never two handlers at once
        await asyncio.sleep(0.0005)  # a handler that awaits, as sending upstream does
        handled.append((message["from"], message["n"]))
        running -= 1

    with pytest.raises(Done):
        await asyncio.wait_for(dispatch_in_turn([frames, control], dispatch), 5)
    assert [n for source, n in handled if source == "socket"] == list(range(50))
    assert [n for source, n in handled if source == "layer"] == list(range(5))  # the flood did not starve it


async def test_what_a_handler_sets_in_the_context_holds_for_the_other_sources_messages():
    frames = source_of([{"set": "visit-1"}])
    control = source_of([{"read": True}, {"stop": True}], pause=0.01)
    seen = []

    async def dispatch(message: dict) -> None:
        if "set" in message:
            session.set(message["set"])
        elif message.get("read"):
            seen.append(session.get())
        else:
            raise Done

    with pytest.raises(Done):
        await asyncio.wait_for(dispatch_in_turn([frames, control], dispatch), 5)
    assert seen == ["visit-1"]
    assert session.get() is None  # the caller's own context is untouched


async def test_a_cancelled_loop_stops_its_readers():
    reader_cancelled = asyncio.Event()

    async def receive() -> dict:
        try:
            await asyncio.Event().wait()
        finally:
            reader_cancelled.set()

    async def dispatch(message: dict) -> None:
        raise AssertionError("nothing arrives")

    loop = asyncio.ensure_future(dispatch_in_turn([receive], dispatch))
    await asyncio.sleep(0.01)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert reader_cancelled.is_set()


async def test_a_backlog_of_frames_lets_the_other_tasks_run_between_them():
    """A kiosk's queued frames are read at once; another session's task still runs between them."""
    backlog: asyncio.Queue = asyncio.Queue()  # as the server's receive queue: a waiting message comes at once
    for message in [{"n": i} for i in range(100)] + [{"stop": True}]:
        backlog.put_nowait(message)
    turns_of_another_task = 0
    handled_while_it_ran = []

    async def another_session() -> None:
        nonlocal turns_of_another_task
        while True:
            turns_of_another_task += 1
            await asyncio.sleep(0)

    async def dispatch(message: dict) -> None:
        if message.get("stop"):
            raise Done
        handled_while_it_ran.append(turns_of_another_task)

    other = asyncio.ensure_future(another_session())
    try:
        with pytest.raises(Done):
            await dispatch_in_turn([backlog.get], dispatch)
    finally:
        other.cancel()
    assert len(set(handled_while_it_ran)) == 100  # it ran between every two frames
