"""The rollout part of the REST API under /api/v1/ (served in the ``metrics_api`` namespace, see the project's
urls): status, fallback status, the emergency actions and the cost status."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("realtime/status", api.StatusView.as_view(), name="status"),
    path("realtime/fallback-status", api.FallbackStatusView.as_view(), name="fallback-status"),
    path("realtime/force-fallback", api.ForceFallbackView.as_view(), name="force-fallback"),
    path("realtime/emergency-stop", api.EmergencyStopView.as_view(), name="emergency-stop"),
    path("realtime/resume", api.ResumeView.as_view(), name="resume"),
    path("realtime/cost-status", api.CostStatusView.as_view(), name="cost-status"),
]
