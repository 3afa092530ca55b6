"""The voices a kiosk's sessions speak with: the kiosk's own choice (admin → kiosk), else the settings.

The Realtime voices are the Realtime API's, handed down by the settings (REALTIME_VOICE_CHOICES: this app cannot
import `realtime`); the local voices are those installed (`speech.voices`). A choice that is no longer offered (a
voice taken out of a later release) is not used: the session speaks with the setting's voice and a warning is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext

from speech.voices import local_voices

from .models import Kiosk

logger = logging.getLogger(__name__)

# The Kiosk field and the setting of each language's local voice.
LOCAL_VOICE_FIELDS = {"ja": ("legacy_voice_ja", "LEGACY_VOICE_JA"), "en": ("legacy_voice_en", "LEGACY_VOICE_EN")}


@dataclass(frozen=True)
class KioskVoices:
    realtime: str  # a voice of the Realtime API
    local: dict[str, str]  # language -> a local voice (speech/voices.py) of the Legacy path


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


def kiosk_voices(kiosk_id: int | None) -> KioskVoices:
    """The voices of a session on kiosk `kiosk_id` (None: a session without a kiosk speaks with the settings')."""
    fields = ("realtime_voice", *(field for field, _setting in LOCAL_VOICE_FIELDS.values()))
    chosen = Kiosk.objects.filter(pk=kiosk_id).values(*fields).first() if kiosk_id is not None else None
    chosen = chosen or {}
    realtime = _offered(kiosk_id, "realtime_voice", chosen, settings.REALTIME_VOICE_CHOICES) or settings.REALTIME_VOICE
    local = {}
    for language, (field, setting) in LOCAL_VOICE_FIELDS.items():
        offered = [voice.name for voice in local_voices(language)]
        local[language] = _offered(kiosk_id, field, chosen, offered) or getattr(settings, setting)
    return KioskVoices(realtime, local)


def _offered(kiosk_id: int | None, field: str, chosen: dict[str, str], offered: list[str] | tuple[str, ...]) -> str:
    """The kiosk's choice in `field` if it is still offered; "" (the setting's voice) otherwise."""
    name = chosen.get(field, "")
    if name and name not in offered:
        logger.warning("kiosk %s: its %s %r is no longer offered; the setting's voice is used", kiosk_id, field, name)
        return ""
    return name
