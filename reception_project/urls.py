"""URLs: the admin, the operations API with the health check, liveness and readiness, the Prometheus scrape and
the kiosk page."""

from django.contrib import admin
from django.urls import include, path

from fallback import urls as fallback_urls
from metrics import urls as metrics_urls
from metrics.prometheus import metrics_view

from . import health

# The operations API: the metrics views, the rollout views and the health check, one namespace.
api_patterns = [
    *metrics_urls.urlpatterns,
    *fallback_urls.urlpatterns,
    path("realtime/health-check", health.HealthCheckView.as_view(), name="health-check"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_patterns, metrics_urls.app_name))),
    path("health/live", health.live_view, name="health-live"),
    path("health/ready", health.ready_view, name="health-ready"),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("", include("voice.urls")),
]
