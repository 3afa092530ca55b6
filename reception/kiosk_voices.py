"""The voices a kiosk's sessions speak with: the kiosk's own choice (admin → kiosk), else the settings.

The Realtime voices are the Realtime API's, handed down by the settings (REALTIME_VOICE_CHOICES: this app cannot
import `realtime`); the local voices are those installed (`speech.voices`).
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext

from speech.voices import local_voices

# The Kiosk field and the setting of each language's local voice.
LOCAL_VOICE_FIELDS = {"ja": ("legacy_voice_ja", "LEGACY_VOICE_JA"), "en": ("legacy_voice_en", "LEGACY_VOICE_EN")}


def realtime_voice_choices() -> list[tuple[str, str]]:
    """The admin's choices of a kiosk's Realtime voice: blank (the setting's voice), or one of the API's voices."""
    default = gettext("Default: %(voice)s (the %(setting)s setting)") % {
        "voice": settings.REALTIME_VOICE,
        "setting": "REALTIME_VOICE",
    }
    return [("", default), *((name, name) for name in settings.REALTIME_VOICE_CHOICES)]


def local_voice_choices(language: str) -> list[tuple[str, str]]:
    """The admin's choices of a kiosk's local voice for `language`: blank (the setting's), or an installed voice."""
    setting = LOCAL_VOICE_FIELDS[language][1]
    default = gettext("Default: %(voice)s (the %(setting)s setting)") % {
        "voice": getattr(settings, setting),
        "setting": setting,
    }
    return [("", default), *((voice.name, f"{voice.name} — {voice.label}") for voice in local_voices(language))]
