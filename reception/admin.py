"""The reception console: kiosks (keys and pairing links), staff, appointments, visits, host notifications."""

from __future__ import annotations

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from core.history import audit_context
from core.history_admin import AuditedAdmin

from .kiosk_voices import local_voice_choices, realtime_voice_choices
from .models import Appointment, HostNotification, Kiosk, KioskPairing, StaffMember, Visit

# A kiosk's voices are chosen from what is offered now (the Realtime API's voices, the installed local ones).
KIOSK_VOICE_CHOICES = {
    "realtime_voice": realtime_voice_choices,
    "legacy_voice_ja": partial(local_voice_choices, "ja"),
    "legacy_voice_en": partial(local_voice_choices, "en"),
}


class KioskPairingInline(admin.TabularInline):
    model = KioskPairing
    extra = 0
    can_delete = False
    fields = ("created_at", "created_by", "expires_at", "paired_at", "revoked")
    readonly_fields = ("created_at", "created_by", "expires_at", "paired_at")


@admin.register(Kiosk)
class KioskAdmin(AuditedAdmin):
    list_display = ("name", "location", "key_prefix", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "location")
    readonly_fields = ("key_prefix", "created_at")
    inlines = [KioskPairingInline]
    actions = ["create_pairing_link", "issue_new_key"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        choices = KIOSK_VOICE_CHOICES.get(db_field.name)
        if choices is None:
            return super().formfield_for_dbfield(db_field, request, **kwargs)
        label = capfirst(db_field.verbose_name)
        return forms.ChoiceField(choices=choices, required=False, label=label, help_text=db_field.help_text)

    def save_model(self, request, obj: Kiosk, form, change: bool) -> None:
        if not change:
            raw_key = obj.set_new_key()
            self.message_user(
                request,
                _("Key for %(kiosk)s (shown only now): %(key)s") % {"kiosk": obj.name, "key": raw_key},
                messages.WARNING,
            )
        super().save_model(request, obj, form, change)

    @admin.action(description=_("Create a pairing link (open it on the kiosk's browser)"))
    def create_pairing_link(self, request, queryset) -> None:
        for kiosk in queryset:
            with audit_context(f"user:{request.user.get_username()}", "pairing link created"):
                _pairing, token = KioskPairing.create_link(kiosk, request.user)
            url = request.build_absolute_uri(reverse("voice:pair", args=[token]))
            self.message_user(
                request, _("Pairing link for %(kiosk)s (one use): %(url)s") % {"kiosk": kiosk.name, "url": url}
            )

    @admin.action(description=_("Issue a new key (the old one stops working)"))
    def issue_new_key(self, request, queryset) -> None:
        for kiosk in queryset:
            raw_key = kiosk.set_new_key()
            kiosk._change_reason = "new key issued"
            kiosk.save(update_fields=["key_prefix", "key_hash"])
            self.message_user(
                request,
                _("New key for %(kiosk)s (shown only now): %(key)s") % {"kiosk": kiosk.name, "key": raw_key},
                messages.WARNING,
            )


@admin.register(StaffMember)
class StaffMemberAdmin(AuditedAdmin):
    list_display = ("name", "reading", "romaji", "department", "notify_via", "is_present", "is_reception_desk")
    list_filter = ("department", "notify_via", "is_present", "is_reception_desk")
    list_editable = ("is_present",)
    search_fields = ("name", "reading", "romaji", "department", "email")


@admin.register(Appointment)
class AppointmentAdmin(AuditedAdmin):
    list_display = ("visitor_name", "visitor_company", "host", "start", "end", "location")
    list_filter = ("start", "host__department")
    search_fields = ("visitor_name", "visitor_company", "host__name", "host__reading", "host__romaji")
    autocomplete_fields = ("host",)
    date_hierarchy = "start"


class HostNotificationInline(admin.TabularInline):
    model = HostNotification
    extra = 0
    can_delete = False
    fields = ("recipient", "channel", "reason", "status", "attempts", "last_error", "created_at", "sent_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Visit)
class VisitAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "visitor_name",
        "company_name",
        "host_name",
        "visitor_type",
        "status",
        "appointment_found",
        "host_notified",
        "kiosk",
    )
    list_filter = ("status", "visitor_type", "appointment_found", "host_notified", "kiosk", "created_at")
    search_fields = ("visitor_name", "company_name", "host_name", "session_id")
    readonly_fields = ("session_id", "kiosk", "language", "created_at", "updated_at", "completed_at")
    date_hierarchy = "created_at"
    inlines = [HostNotificationInline]


@admin.register(HostNotification)
class HostNotificationAdmin(admin.ModelAdmin):
    """Every notification as the background task left it (pending, sent, failed; attempts, last error). A failed
    one stands out: a host's means the desk was told next (its own row), the desk's means nobody was."""

    list_display = ("created_at", "delivery", "recipient", "channel", "reason", "attempts", "last_error", "visit")
    list_filter = ("status", "channel", "reason", "created_at")
    search_fields = ("visit__visitor_name", "visit__session_id", "recipient__name")
    list_select_related = ("recipient", "visit")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("status"), ordering="status")
    def delivery(self, row: HostNotification) -> str:
        """The status, a failure in bold with a warning sign."""
        if row.status == HostNotification.Status.FAILED:
            return format_html("<strong>⚠ {}</strong>", row.get_status_display())
        return row.get_status_display()
