"""The REST API under /api/v1/ (contract section 5) and its OpenAPI schema."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import api

app_name = "metrics_api"

urlpatterns = [
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("realtime/status", api.StatusView.as_view(), name="status"),
    path("realtime/metrics", api.MetricsView.as_view(), name="metrics"),
    path("realtime/fallback-status", api.FallbackStatusView.as_view(), name="fallback-status"),
    path("realtime/force-fallback", api.ForceFallbackView.as_view(), name="force-fallback"),
    path("realtime/emergency-stop", api.EmergencyStopView.as_view(), name="emergency-stop"),
    path("realtime/resume", api.ResumeView.as_view(), name="resume"),
    path("realtime/cost-status", api.CostStatusView.as_view(), name="cost-status"),
    path("realtime/performance-stats", api.PerformanceStatsView.as_view(), name="performance-stats"),
]
