"""The kiosk page and the pairing link that lets a browser act as a kiosk."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.http import require_http_methods

from core.permissions_policy import HEADER as PERMISSIONS_POLICY
from core.permissions_policy import permissions_policy
from reception.models import Kiosk, KioskPairing, Visit

from .kiosk_auth import DEVICE_COOKIE

DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600


def kiosk_page(request: HttpRequest) -> HttpResponse:
    """The touch screen. Japanese unless `?lang=en`; tells staff when the browser is not paired."""
    language = request.GET.get("lang", "ja")
    if language not in dict(settings.LANGUAGES):
        language = "ja"
    translation.activate(language)
    kiosk = Kiosk.objects.authenticate_device(request.COOKIES.get(DEVICE_COOKIE, ""))
    context = {"kiosk": kiosk, "language": language, "kiosk_strings": _kiosk_strings()}
    response = render(request, "kiosk/kiosk.html", context)
    response.headers["Content-Language"] = language
    # The page speaks over its own socket and listens through the microphone; nothing else is allowed.
    socket_origin = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
    response._csp_update = {"connect-src": [socket_origin]}  # what django-csp's @csp_update decorator sets
    response.headers[PERMISSIONS_POLICY] = permissions_policy("microphone")
    return response


def _kiosk_strings() -> dict[str, object]:
    """The page script's words, in the active language."""
    return {
        "connected": _("Please speak or type."),
        "connecting": _("Connecting…"),
        "reconnecting": _("Connection lost. Reconnecting…"),
        "thinking": _("One moment…"),
        "unauthorized": _("This kiosk is not recognised. Please ask staff to pair it again."),
        "error": _("Sorry, something went wrong. Please try again."),
        "statuses": {value: str(label) for value, label in Visit.Status.choices},
        # Visitors see friendly words for the voice path; staff screens keep the product names.
        "modes": {
            "realtime": pgettext("voice path, kiosk", "Realtime"),
            "legacy": pgettext("voice path, kiosk", "Legacy"),
        },
        "states": {"listening": _("Listening"), "thinking": _("Thinking"), "speaking": _("Speaking"), "idle": ""},
        "mic_refused": _("The microphone is not allowed. Please type your answers, or ask staff to allow it."),
        "mic_missing": _("No microphone was found. Please type your answers."),
    }


@require_http_methods(["GET", "POST"])
def pair_kiosk(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what will happen; POST redeems the one-time link and sets the device cookie."""
    if request.method == "GET":
        return render(request, "kiosk/pair.html", {"token": token})
    device_token = KioskPairing.redeem(token)
    if device_token is None:
        return render(request, "kiosk/pair.html", {"token": token, "invalid": True}, status=400)
    response = redirect("voice:kiosk")
    response.set_cookie(
        DEVICE_COOKIE,
        device_token,
        max_age=DEVICE_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Strict",
        secure=settings.SECURE_HTTPS or request.is_secure(),
    )
    return response
