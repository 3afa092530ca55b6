"""API authentication: ``Authorization: Bearer <token>`` from ``create_api_token`` (stored hashed)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from .models import ApiToken, hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, None without one; raises on a malformed one."""
    parts = authentication.get_authorization_header(request).split()
    if not parts or parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <token>'.")
    try:
        return parts[1].decode()
    except UnicodeError:
        raise exceptions.AuthenticationFailed("Invalid token.") from None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """A staff user's API token; a wrong, unknown or expired token is a 401, a token of a demoted user a 403."""

    def authenticate(self, request: HttpRequest) -> tuple[Any, ApiToken] | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid token.")
        now = timezone.now()
        if token.expires_at <= now:
            raise exceptions.AuthenticationFailed("This token has expired; ask for a new one.")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)  # not a write per request
        return token.user, token

    def authenticate_header(self, request: HttpRequest) -> str:
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "metrics.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "Token from `manage.py create_api_token USER`."}


class IsStaff(permissions.BasePermission):
    """Staff only; changes (POST) also need the permission to change the rollout config, as in the admin."""

    message = "Staff only."

    def has_permission(self, request: HttpRequest, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        return request.method in permissions.SAFE_METHODS or user.has_perm("fallback.change_rolloutconfig")


def scrape_token_matches(request: HttpRequest) -> bool:
    """True if the request carries METRICS_SCRAPE_TOKEN as its Bearer token (constant-time compare)."""
    expected = settings.METRICS_SCRAPE_TOKEN
    try:
        given = bearer_token(request)
    except exceptions.AuthenticationFailed:
        return False
    return bool(expected and given and secrets.compare_digest(given.encode(), expected.encode()))
