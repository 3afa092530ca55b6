"""App configuration of the Realtime/Legacy routing policy, its guards and emergency controls."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FallbackConfig(AppConfig):
    name = "fallback"
    verbose_name = _("Realtime rollout and fallback")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .receivers import connect  # models are importable only once the app registry is ready

        connect()
