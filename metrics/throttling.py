"""Throttles of the operations API (DRF), on the shared cache, with rates read from the settings per request.

Staff calls are counted per user (an API token counts for its user), anonymous calls (the health check) per
address, and the emergency and rollout POSTs have their own, tighter budget per user. Over the limit: 429
with `Retry-After`.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class SettingsRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is the setting named by `rate_setting` (changeable without a restart of DRF)."""

    rate_setting = ""

    def get_rate(self) -> str:
        return getattr(settings, self.rate_setting)

    def get_cache_key(self, request, view) -> str | None:
        ident = self.identity(request)
        return None if ident is None else self.cache_format % {"scope": self.scope, "ident": ident}

    def identity(self, request) -> str | None:
        raise NotImplementedError


class UserThrottle(SettingsRateThrottle):
    scope, rate_setting = "user", "API_THROTTLE_USER"

    def identity(self, request) -> str | None:
        return str(request.user.pk) if request.user and request.user.is_authenticated else None


class AnonThrottle(SettingsRateThrottle):
    scope, rate_setting = "anon", "API_THROTTLE_ANON"

    def identity(self, request) -> str | None:
        return None if request.user and request.user.is_authenticated else self.get_ident(request)


class ControlThrottle(UserThrottle):
    scope, rate_setting = "control", "API_THROTTLE_CONTROL"
