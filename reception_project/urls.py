"""URLs: the admin, the operations API, the Prometheus scrape and the kiosk page."""

from django.contrib import admin
from django.urls import include, path

from fallback import urls as fallback_urls
from metrics import urls as metrics_urls
from metrics.prometheus import metrics_view

# The operations API: the metrics views and the rollout views, one namespace.
api_urls = ([*metrics_urls.urlpatterns, *fallback_urls.urlpatterns], metrics_urls.app_name)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_urls)),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("", include("voice.urls")),
]
