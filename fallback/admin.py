"""Admin: the Realtime control page (emergency buttons, rollout, allowlist, guards, simulate) and read-only logs.

Every change goes through fallback.emergency.apply_action, so the admin cannot skip the audit trail:
the model pages here are read-only and link to the control page.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.history_admin import ReadOnlyAdmin
from metrics.cost import estimate_session_cost
from metrics.ledger import spend_last_hour

from .bucketing import bucket_bp
from .config import ENVIRONMENT_KILL_SWITCH, load_config, load_emergency
from .emergency import Action, ActionError, apply_action
from .forms import ActionForm, SimulateForm
from .gates import promotion_gates
from .models import (
    STAGE_ORDER,
    AllowlistEntry,
    AuditEntry,
    EmergencyState,
    FallbackEvent,
    GuardState,
    RolloutConfig,
    RoutingDecision,
)
from .services import explain_session

SUPERUSER_ONLY = {Action.CLEAR_EMERGENCY_STOP}


@admin.register(RolloutConfig)
class RolloutConfigAdmin(ReadOnlyAdmin):
    """The list page is the Realtime control page; changes are made there, with a reason."""

    def get_urls(self) -> list[URLPattern]:
        control = path("control/", self.admin_site.admin_view(self.control_view), name="fallback_control")
        return [control, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:fallback_control"))

    def control_view(self, request: HttpRequest) -> HttpResponse:
        """Show the effective config with sources, guards and audit; apply the posted action."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ActionForm()
        if request.method == "POST":
            if not request.user.has_perm("fallback.change_rolloutconfig"):
                raise PermissionDenied
            form = ActionForm(request.POST)
            if form.is_valid() and self._apply(request, form):
                return HttpResponseRedirect(request.path)
        simulate_form = SimulateForm(request.GET or None)
        decision = bucket = None
        config = load_config(load_emergency())
        if simulate_form.is_valid():
            decision = explain_session(simulate_form.cleaned_data["session_id"])
            bucket = bucket_bp(config.salt, simulate_form.cleaned_data["session_id"])
        reservation = estimate_session_cost()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Realtime control"),
            "kill_switch": ENVIRONMENT_KILL_SWITCH,
            "reservation_estimate": reservation,
            "cost_limit_below_reservation": Decimal(str(config.cost_limit_per_hour.value)) < reservation,
            "opts": self.opts,
            "form": form,
            "emergency": load_emergency(),
            "config": config,
            "config_rows": config.as_rows(),
            "stages": STAGE_ORDER,
            "rollout_row": (rollout_row := RolloutConfig.load()),
            "gates": promotion_gates(config=rollout_row),
            "allowlist": sorted(config.allowlist.value),
            "guards": GuardState.objects.all(),
            "spend": spend_last_hour(),
            "audit": AuditEntry.objects.all()[:20],
            "simulate_form": simulate_form,
            "decision": decision,
            "bucket": bucket,
        }
        return TemplateResponse(request, "fallback/control.html", context)

    def _apply(self, request: HttpRequest, form: ActionForm) -> bool:
        action = Action(form.cleaned_data["action"])
        params = form.action_params()
        if (action in SUPERUSER_ONLY or params.get("override")) and not request.user.is_superuser:
            form.add_error(None, _("Only a superuser may clear an emergency stop or override a stage gate."))
            return False
        try:
            result = apply_action(
                action, actor=f"user:{request.user.get_username()}", reason=form.cleaned_data["reason"], **params
            )
        except ActionError as exc:
            form.add_error(None, str(exc))
            return False
        self.message_user(request, result.summary(), messages.SUCCESS)
        return True


class ControlLinkMixin:
    """A link to the control page above read-only lists whose rows are changed there."""

    @admin.display(description=_("change"))
    def control_link(self, obj: Any) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:fallback_control"), _("Realtime control"))


@admin.register(EmergencyState)
class EmergencyStateAdmin(ControlLinkMixin, ReadOnlyAdmin):
    list_display = ("__str__", "force_fallback", "emergency_stop", "stop_reason", "stop_since", "control_link")


@admin.register(AllowlistEntry)
class AllowlistEntryAdmin(ControlLinkMixin, ReadOnlyAdmin):
    list_display = ("session_id", "note", "added_by", "added_at", "control_link")
    search_fields = ("session_id",)


@admin.register(GuardState)
class GuardStateAdmin(ControlLinkMixin, ReadOnlyAdmin):
    list_display = ("name", "state", "trip_count", "cooldown_seconds", "retry_at", "probe_budget", "last_reason")
    list_filter = ("state",)


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(ReadOnlyAdmin):
    list_display = ("decided_at", "session_id", "mode", "reason", "detail", "config_version")
    list_filter = ("mode", "reason")
    search_fields = ("session_id",)
    date_hierarchy = "decided_at"


@admin.register(FallbackEvent)
class FallbackEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "session_id", "reason", "detail")
    list_filter = ("reason",)
    search_fields = ("session_id",)
    date_hierarchy = "created_at"


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "reason", "before", "after")
    list_filter = ("action",)
    search_fields = ("actor", "reason")
    date_hierarchy = "created_at"
