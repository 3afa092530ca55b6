"""HTTP routes of the kiosk: the page and the pairing link."""

from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "voice"
urlpatterns = [
    path("", RedirectView.as_view(pattern_name="voice:kiosk", permanent=False)),
    path("kiosk/", views.kiosk_page, name="kiosk"),
    path("kiosk/pair/<str:token>/", views.pair_kiosk, name="pair"),
]
