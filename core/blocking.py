"""Running blocking work (database, workflow) from the event loop."""

from channels.db import database_sync_to_async


def run_blocking(func):
    """`func` as a coroutine function that runs in the thread pool, not Django's single sync thread.

    Turns of different kiosks then run side by side; database connections are tidied as for
    any Channels database call.
    """
    return database_sync_to_async(func, thread_sensitive=False)
