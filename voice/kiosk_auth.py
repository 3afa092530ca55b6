"""Who is on the kiosk socket: origin check and kiosk authentication (key header or paired cookie)."""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from reception.models import Kiosk

DEVICE_COOKIE = "kiosk_device"


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def origin_allowed(scope: dict) -> bool:
    """Browsers must come from one of our own hosts; programs send no Origin and are let through to auth."""
    origin = _header(scope, b"origin")
    if not origin:
        return True
    host = urlsplit(origin).hostname or ""
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


def authenticate_kiosk(scope: dict) -> Kiosk | None:
    """The kiosk behind `Authorization: Bearer <key>` or the paired device cookie (blocking: DB)."""
    authorization = _header(scope, b"authorization")
    if authorization.lower().startswith("bearer "):
        return Kiosk.objects.authenticate_key(authorization[7:].strip())
    cookie = SimpleCookie()
    cookie.load(_header(scope, b"cookie"))
    morsel = cookie.get(DEVICE_COOKIE)
    return Kiosk.objects.authenticate_device(morsel.value) if morsel else None
