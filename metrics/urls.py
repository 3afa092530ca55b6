"""The metrics part of the REST API under /api/v1/ and its OpenAPI schema (the project's urls add fallback's part
to the same ``metrics_api`` namespace)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import api

app_name = "metrics_api"

urlpatterns = [
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("realtime/metrics", api.MetricsView.as_view(), name="metrics"),
    path("realtime/performance-stats", api.PerformanceStatsView.as_view(), name="performance-stats"),
]
