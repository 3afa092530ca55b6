"""URLs: the admin, the operations API, the Prometheus scrape and the kiosk page."""

from django.contrib import admin
from django.urls import include, path

from metrics.prometheus import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("metrics.urls")),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("", include("voice.urls")),
]
