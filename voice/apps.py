"""App configuration of the voice app."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VoiceConfig(AppConfig):
    name = "voice"
    verbose_name = _("Voice")
    default_auto_field = "django.db.models.BigAutoField"
