"""Security headers django does not set itself: Permissions-Policy (no powerful feature unless a view allows it)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# Browser features a page could ask for; every page denies them all unless its view allows some.
FEATURES = ("accelerometer", "camera", "display-capture", "geolocation", "gyroscope", "microphone", "payment", "usb")
HEADER = "Permissions-Policy"


def permissions_policy(*allowed: str) -> str:
    """The header value allowing `allowed` features to this origin only and denying the rest."""
    return ", ".join(f"{feature}=(self)" if feature in allowed else f"{feature}=()" for feature in FEATURES)


class PermissionsPolicyMiddleware:
    """Adds the deny-all Permissions-Policy to every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault(HEADER, permissions_policy())
        return response
