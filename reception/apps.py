"""App configuration of the reception domain."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReceptionConfig(AppConfig):
    name = "reception"
    verbose_name = _("Reception")
    default_auto_field = "django.db.models.BigAutoField"
