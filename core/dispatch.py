"""A consumer's message loop for sockets that carry many small frames (kiosk audio: 50 a second).

Channels' own loop (`channels.utils.await_many_dispatch`) makes a new task for the next message and an
`asyncio.wait` over its sources for every message it reads. Here each source is read by one long-lived loop
and the handler runs under a lock, so messages are still handled one at a time, in the order each source gave
them, with no task or waiter set per message.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

Source = Callable[[], Awaitable[dict[str, Any]]]


async def dispatch_in_turn(sources: list[Source], dispatch: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Read every source and `dispatch` each message, one at a time, until a dispatch raises (Channels'
    `StopConsumer` included), which is raised here once the readers are stopped.

    The readers share one context, so what a handler sets there (the log context of a session, say) holds for
    the messages of every source, as it does in Channels' loop.
    """
    turn = asyncio.Lock()  # first come, first served: a flood from one source cannot starve the other

    async def read(source: Source) -> None:
        while True:
            message = await source()
            async with turn:
                await dispatch(message)
            # A source with messages waiting returns the next at once: without this, a kiosk's backlog of frames
            # would be read to its end before any other task (another session's replies) ran.
            await asyncio.sleep(0)

    context = contextvars.copy_context()
    readers = [asyncio.create_task(read(source), context=context) for source in sources]
    try:
        done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
        for reader in done:
            reader.result()
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
