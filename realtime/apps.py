from __future__ import annotations

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime voice path"

    def ready(self) -> None:
        from . import mask_keys

        mask_keys.install()
