"""`{% emergency_banner %}`: a red banner on every admin page while force fallback or emergency stop is on."""

from __future__ import annotations

import logging

from django import template
from django.db import DatabaseError
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from fallback.config import load_emergency

logger = logging.getLogger(__name__)
register = template.Library()

BANNER_STYLE = (
    "background:#ba2121;color:#fff;padding:12px 20px;margin:0 0 10px;font-size:15px;font-weight:bold;border-radius:4px"
)


@register.simple_tag
def emergency_banner() -> SafeString | str:
    """The banner HTML, or nothing when no emergency state is active (or the table is not there yet)."""
    try:
        emergency = load_emergency()
    except DatabaseError:  # before migrate; the admin must still render
        logger.warning("emergency state unreadable; no banner shown", exc_info=True)
        return ""
    if not emergency.active:
        return ""
    title = _("EMERGENCY STOP") if emergency.emergency_stop else _("FORCE FALLBACK")
    return format_html(
        '<div id="emergency-banner" role="alert" style="{}">{}: {} — {} ({}, {}) <a href="{}" style="color:#fff;'
        'text-decoration:underline">{}</a></div>',
        BANNER_STYLE,
        title,
        _("every new session uses Legacy"),
        emergency.reason,
        emergency.actor,
        emergency.since.strftime("%Y-%m-%d %H:%M") if emergency.since else "",
        reverse("admin:fallback_control"),
        _("Realtime control"),
    )
