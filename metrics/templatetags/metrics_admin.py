"""`{% metrics_alert_banner %}`: an orange banner on every admin page while a cost or error-rate alert is raised."""

from __future__ import annotations

import logging

from django import template
from django.db import DatabaseError
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from metrics.alerts import active_alerts

logger = logging.getLogger(__name__)
register = template.Library()

BANNER_STYLE = "background:#c05600;color:#fff;padding:10px 20px;margin:0 0 10px;font-weight:bold;border-radius:4px"


@register.simple_tag
def metrics_alert_banner() -> SafeString | str:
    """The banner HTML, or nothing when no alert is raised (or before migrate)."""
    try:
        alerts = active_alerts()
    except DatabaseError:
        logger.warning("alert state unreadable; no banner shown", exc_info=True)
        return ""
    if not alerts:
        return ""
    lines = format_html_join(
        "",
        "<div>{}: {} ({})</div>",
        ((a.get_name_display(), a.message, f"{a.raised_at:%Y-%m-%d %H:%M}") for a in alerts),
    )
    return format_html(
        '<div id="metrics-alert-banner" role="alert" style="{}">{}{} <a href="{}" style="color:#fff;'
        'text-decoration:underline">{}</a></div>',
        BANNER_STYLE,
        _("ALERT"),
        lines,
        reverse("admin:metrics_metricsdashboard_changelist"),
        _("Operations dashboard"),
    )
