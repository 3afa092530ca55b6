"""Forms of the admin control page: one form for every audited action, one for the simulate box."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from core.session_ids import SESSION_ID_PATTERN

from .emergency import OPTIONAL, PARAMETER, Action
from .models import STAGE_ORDER, GuardName


class ActionForm(forms.Form):
    """An action with its parameter (enable: optionally a percentage or a stage); a reason and a confirmation
    are always required."""

    action = forms.ChoiceField(choices=[(a.value, a.value) for a in Action])
    percent = forms.DecimalField(
        label=_("percentage"), required=False, min_value=0, max_value=100, max_digits=5, decimal_places=2
    )
    stage = forms.ChoiceField(label=_("stage"), required=False, choices=[("", "---"), *[(s, s) for s in STAGE_ORDER]])
    cost_limit = forms.DecimalField(
        label=_("cost limit (USD/hour)"), required=False, min_value=0, max_digits=10, decimal_places=2
    )
    session_id = forms.RegexField(label=_("session id"), required=False, regex=SESSION_ID_PATTERN, max_length=64)
    guard = forms.ChoiceField(label=_("guard"), required=False, choices=[("", "---"), *GuardName.choices])
    override = forms.BooleanField(label=_("override the stage gate (superuser)"), required=False)
    reason = forms.CharField(label=_("reason"), max_length=500, strip=True, help_text=_("Stored in the audit trail."))
    confirm = forms.BooleanField(label=_("I confirm this change"), required=True)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        action = data.get("action")
        wanted = PARAMETER.get(Action(action)) if action else None
        if wanted and data.get(wanted) in (None, ""):
            self.add_error(wanted, _("This action needs a %(field)s.") % {"field": self.fields[wanted].label})
        return data

    def action_params(self) -> dict[str, Any]:
        """The keyword arguments of apply_action for the chosen action."""
        action = Action(self.cleaned_data["action"])
        wanted = PARAMETER.get(action)
        params: dict[str, Any] = {wanted: self.cleaned_data[wanted]} if wanted else {}
        for name in OPTIONAL.get(action, ()):  # e.g. enable with a percentage or a stage: one change
            if self.cleaned_data[name] not in (None, ""):
                params[name] = self.cleaned_data[name]
        if "stage" in params:
            params["override"] = self.cleaned_data["override"]
        return params


class SimulateForm(forms.Form):
    session_id = forms.CharField(label=_("session id"), max_length=64, strip=True)
