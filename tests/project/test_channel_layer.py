"""The Redis channel layer as the project configures it, against the local Redis server."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

from reception_project.settings import redis_channel_layer

REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.mark.redis
async def test_a_kiosk_channel_idle_longer_than_the_layers_blocking_pop_still_gets_its_next_message():
    """A live session waits on its channel for minutes; each wait is a BZPOPMIN of `brpop_timeout` seconds.
    With redis-py's default read timeout (as long as that pop) the wait raised and the server closed the kiosk."""
    layer = RedisChannelLayer(**redis_channel_layer(REDIS_URL)["CONFIG"])
    channel = await layer.new_channel()
    try:
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(layer.brpop_timeout + 0.5)  # one empty pop has come back; the wait goes on
        assert not waiting.done(), waiting.exception()
        await layer.send(channel, {"type": "control.emergency"})
        async with asyncio.timeout(10):
            assert await waiting == {"type": "control.emergency"}
    finally:
        await layer.flush()
