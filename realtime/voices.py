"""The voices of the Realtime API: the names `session.audio.output.voice` accepts (the GA service's built-in voices).

One list for the whole project: the bundled emulator refuses any other name, as the service does. A voice cannot
change once the session has spoken, so a session's voice is set when it opens.
"""

from __future__ import annotations

REALTIME_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
DEFAULT_REALTIME_VOICE = "marin"  # the service's default, and one of the two it recommends for gpt-realtime
