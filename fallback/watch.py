"""A per-process watch on the shared emergency state, so a stop reaches live sessions without Redis.

It also relays the cost guard's opening (the hour's Realtime spend passed the limit), so that live Realtime
sessions that are not talking right now move to Legacy too, at their next turn boundary.

The stop is broadcast on the channel layer when it is applied; that reaches other processes only
through a shared layer (Redis). A server on the in-process layer (one process, SQLite) would never
hear a stop issued by `manage.py emergency_stop`, which runs in a process of its own. So each server
process also reads the emergency state from the database every `POLL_SECONDS` and relays a newly
raised stop to its own live sessions. Sessions ignore a second notice (they are on Legacy already).
"""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer

from core.blocking import run_blocking

from .emergency import CONTROL_GROUP, CONTROL_MESSAGE_TYPE, COST_LIMIT_ACTION, Action, emergency_message
from .services import control_state

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
_watcher: asyncio.Task | None = None
_watching_sessions = 0


def watch_emergencies() -> None:
    """A kiosk connected: make sure this process watches (one watch, however many kiosks)."""
    global _watcher, _watching_sessions
    loop = asyncio.get_running_loop()
    if _watcher is not None and _watcher.get_loop().is_closed():
        _watcher, _watching_sessions = None, 0  # the watch and the kiosks of a closed event loop ended with it
    _watching_sessions += 1
    if _watcher is None or _watcher.done():
        _watcher = loop.create_task(_watch(), name="emergency-watch")


def stop_watching_emergencies() -> None:
    """A kiosk left; the last one to leave ends the watch (nothing polls while no kiosk is connected)."""
    global _watching_sessions
    _watching_sessions = max(0, _watching_sessions - 1)
    if _watching_sessions == 0 and _watcher is not None:
        _watcher.cancel()


async def _watch() -> None:
    layer = get_channel_layer()
    status, cost_limit_reached = await run_blocking(control_state)()
    stopped = status.emergency_stop
    while True:
        await asyncio.sleep(POLL_SECONDS)
        try:
            status, limit_now = await run_blocking(control_state)()
        except Exception:
            logger.exception("could not read the emergency state; trying again")
            continue
        if status.emergency_stop and not stopped:
            message = emergency_message(
                str(Action.EMERGENCY_STOP), True, status.force_fallback, status.reason, status.actor
            )
            await layer.group_send(CONTROL_GROUP, message)
        if limit_now and not cost_limit_reached:
            await layer.group_send(CONTROL_GROUP, {"type": CONTROL_MESSAGE_TYPE, "action": COST_LIMIT_ACTION})
        stopped, cost_limit_reached = status.emergency_stop, limit_now
