"""Admin pages of audited models: a History page (who, when, why, before and after) and a reason field; and the
read-only page of records nobody edits in the admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from .history import REASON_MAX_LENGTH, audit_context, current_actor


class ReasonForm(forms.ModelForm):
    """A change form with the reason for the change, stored in the history (required when editing)."""

    change_reason = forms.CharField(
        label=_("Reason for this change"),
        max_length=REASON_MAX_LENGTH,
        required=False,
        help_text=_("Kept in the history with your name and the values before and after."),
    )


class AuditedAdmin(SimpleHistoryAdmin):
    """`SimpleHistoryAdmin` whose change form asks why; list edits and actions give their own reason."""

    form = ReasonForm
    history_list_display = ["history_actor"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "change_reason" in form.base_fields:
            form.base_fields["change_reason"].required = obj is not None
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        reason = form.cleaned_data.get("change_reason") if "change_reason" in form.fields else ""
        obj._change_reason = str(reason or (_("changed in the list") if change else _("added in the admin")))
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Inline rows (e.g. a kiosk's pairings) are saved with the reason given for their parent."""
        with audit_context(current_actor(), getattr(form.instance, "_change_reason", "")):
            super().save_formset(request, form, formset, change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        obj._change_reason = str(_("deleted in the admin"))
        super().delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff with the view permission; nobody adds, edits or deletes here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
