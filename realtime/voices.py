"""The voices of the Realtime API: the names `session.audio.output.voice` accepts (the GA service's built-in voices).

One list for the whole project: the REALTIME_VOICE setting and a kiosk's choice in the admin are checked against it,
and the bundled emulator refuses any other name as the service does. A voice cannot change once the session has
spoken, so a session's voice is set when it opens.
"""

from __future__ import annotations

REALTIME_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
DEFAULT_REALTIME_VOICE = "marin"  # the service's default, and one of the two it recommends for gpt-realtime


def check_realtime_voice(name: str) -> str:
    """`name` if the Realtime API has a voice of that name; ValueError naming the valid ones otherwise."""
    if name not in REALTIME_VOICES:
        raise ValueError(f"{name!r} is not a Realtime voice; valid values: {', '.join(REALTIME_VOICES)}")
    return name
