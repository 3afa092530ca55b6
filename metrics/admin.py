"""Admin: the operations dashboard, sessions with their detail page, the versioned price table, API tokens.

Transcripts (the workflow checkpoint's messages) are shown only to staff with ``metrics.view_personal_data``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from core.history_admin import AuditedAdmin, ReadOnlyAdmin

from .alerts import evaluate_alerts
from .cost import cost_status
from .models import AlertState, ApiToken, MetricsDashboard, ModelPrice, SessionMetric, TurnMetric
from .signals import price_version_added
from .sources import sources
from .stats import WINDOWS, cost_series, summary

logger = logging.getLogger(__name__)
PERSONAL_DATA_PERMISSION = "metrics.view_personal_data"


def session_transcript(session_id: str) -> list[dict[str, str]] | None:
    """The conversation of a session from its workflow checkpoint; None if none is kept (or unreadable)."""
    # Imported here: the workflow package loads LangGraph (0.9 s), which no command or worker process that only
    # sets Django up (every `manage.py` call loads the admin) should pay for.
    from reception.workflow.checkpoint import get_checkpointer

    try:
        saved = get_checkpointer().get_tuple({"configurable": {"thread_id": session_id}})
    except Exception:  # a checkpoint store problem must not break the detail page
        logger.exception("checkpoint of session %s unreadable", session_id)
        return None
    if saved is None:
        return None
    return list(saved.checkpoint.get("channel_values", {}).get("messages", []))


@admin.register(MetricsDashboard)
class DashboardAdmin(ReadOnlyAdmin):
    """The admin index entry "Operations dashboard": charts per window, Realtime and Legacy side by side."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        window = request.GET.get("window", "hour")
        if window not in WINDOWS:
            window = "hour"
        now = timezone.now()
        evaluate_alerts(now=now)
        data = summary(window, now=now)
        money = cost_status(now=now)
        series = cost_series(window, now)
        chart = {
            "paths": data["paths"],
            "fallbacks": data["fallbacks_by_reason"],
            "cost": {
                "labels": [timezone.localtime(b["start"]).strftime("%m-%d %H:%M") for b in series],
                "realtime": [float(b["realtime"]) for b in series],
                "legacy": [float(b["legacy"]) for b in series],
            },
            "projection": {
                "spend": float(money.spend_last_hour),
                "projected": float(money.projected_next_hour),
                "limit": float(money.limit),
            },
        }
        context = {
            **self.admin_site.each_context(request),
            "title": _("Operations dashboard"),
            "opts": self.opts,
            "window": window,
            "windows": list(WINDOWS),
            "summary": data,
            "money": money,
            "alerts": AlertState.objects.all(),
            "chart_data": chart,
            "recent_sessions": SessionMetric.objects.all()[:20],
        }
        return TemplateResponse(request, "metrics/dashboard.html", context)


@admin.register(SessionMetric)
class SessionMetricAdmin(ReadOnlyAdmin):
    list_display = (
        "session_id",
        "started_at",
        "mode",
        "paths",
        "outcome",
        "turns",
        "fallbacks",
        "cost_usd",
        "visitor_turns",
        "reasks",
        "satisfaction",
    )
    list_filter = ("mode", "outcome", "satisfaction")
    search_fields = ("session_id",)
    date_hierarchy = "started_at"

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The session detail page: numbers for every staff viewer, the transcript only with the permission."""
        session = get_object_or_404(SessionMetric, pk=object_id)
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        personal = request.user.has_perm(PERSONAL_DATA_PERMISSION)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Session %(id)s") % {"id": session.session_id},
            "opts": self.opts,
            "original": session,
            "session": session,
            "turns": TurnMetric.objects.filter(session_id=session.session_id).order_by("occurred_at"),
            **sources.session_detail(session.session_id),  # the routing decision and fallback events
            "show_personal_data": personal,
            "transcript": session_transcript(session.session_id) if personal else None,
        }
        return TemplateResponse(request, "metrics/session_detail.html", context)


@admin.register(ModelPrice)
class ModelPriceAdmin(SimpleHistoryAdmin):
    """Each save adds a new version (effective now or later); existing versions are never edited or deleted."""

    list_display = (
        "model",
        "effective_from",
        "text_input",
        "cached_text_input",
        "audio_input",
        "cached_audio_input",
        "text_output",
        "audio_output",
        "audio_input_per_minute",
        "audio_output_per_minute",
        "created_by",
    )
    list_filter = ("model",)
    readonly_fields = ("created_by", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {**super().get_changeform_initial_data(request), "effective_from": timezone.now()}

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        previous = ModelPrice.objects.filter(pk=obj.pk).values().first() if change else None
        now = timezone.now()
        obj.pk, obj._state.adding = None, True  # a change is a new version: history stays as it was
        obj.effective_from = max(obj.effective_from or now, now)
        obj.created_by = f"user:{request.user.get_username()}"
        obj._change_reason = (obj.note or "price change")[:100]
        obj.save()
        after = {f: str(getattr(obj, f)) for f in form.changed_data if f != "effective_from"}
        price_version_added.send(  # the rollout's audit trail records it
            sender=ModelPrice,
            actor=obj.created_by,
            reason=obj.note or "price change",
            before={k: str(previous[k]) for k in after} if previous else {},
            after={"model": obj.model, "effective_from": obj.effective_from.isoformat(), **after},
        )
        if change:
            messages.info(request, _("Saved as a new version; the earlier version keeps pricing earlier turns."))


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdmin):
    """Tokens are created by `manage.py create_api_token`; here they can be seen and revoked (deleted)."""

    list_display = ("user", "key_prefix", "created_at", "expires_at", "last_used_at")
    readonly_fields = ("user", "key_prefix", "created_at", "expires_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AlertState)
class AlertStateAdmin(ReadOnlyAdmin):
    list_display = ("name", "active", "value", "threshold", "episodes", "raised_at", "cleared_at", "message")
