"""The kiosk page and the pairing link."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse
from django.utils import translation

from metrics.models import Mode
from reception.models import Kiosk, KioskPairing
from voice.kiosk_auth import DEVICE_COOKIE

pytestmark = pytest.mark.django_db


def test_unpaired_browser_is_told_how_to_pair(client):
    response = client.get("/kiosk/")
    assert response.status_code == 200
    assert "not-paired" in response.content.decode()
    assert "kiosk.js" not in response.content.decode()


def pair(client, kiosk) -> None:
    _, token = KioskPairing.create_link(kiosk)
    confirm = client.get(reverse("voice:pair", args=[token]))
    assert confirm.status_code == 200 and "<form" in confirm.content.decode()
    response = client.post(reverse("voice:pair", args=[token]))
    assert response.status_code == 302 and response.url == "/kiosk/"
    cookie = response.cookies[DEVICE_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    return token


def test_pairing_link_works_once_and_lets_the_page_in(client, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    token = pair(client, kiosk)
    page = client.get("/kiosk/").content.decode()
    assert "kiosk.js" in page and kiosk.location in page
    again = client.post(reverse("voice:pair", args=[token]))
    assert again.status_code == 400


def test_pairing_link_expires(client, kiosk_and_key, settings):
    kiosk, _ = kiosk_and_key
    settings.KIOSK_PAIRING_LINK_HOURS = -1
    _, token = KioskPairing.create_link(kiosk)
    assert client.post(reverse("voice:pair", args=[token])).status_code == 400


def test_revoked_pairing_no_longer_lets_the_browser_in(client, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    pair(client, kiosk)
    KioskPairing.objects.update(revoked=True)
    assert "not-paired" in client.get("/kiosk/").content.decode()


@pytest.mark.parametrize(
    ("lang", "expected", "absent"),
    [("ja", "お名前", "Person you are visiting"), ("en", "Person you are visiting", "お名前")],
)
def test_page_speaks_the_chosen_language(client, kiosk_and_key, lang, expected, absent):
    kiosk, _ = kiosk_and_key
    pair(client, kiosk)
    response = client.get(f"/kiosk/?lang={lang}")
    page = response.content.decode()
    assert response.headers["Content-Language"] == lang
    assert f'<html lang="{lang}">' in page
    assert expected in page and absent not in page


def test_admin_creates_a_pairing_link_and_a_kiosk_key(admin_client, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    response = admin_client.post(
        reverse("admin:reception_kiosk_changelist"),
        {"action": "create_pairing_link", "_selected_action": [kiosk.pk]},
        follow=True,
    )
    assert "/kiosk/pair/" in response.content.decode()
    assert KioskPairing.objects.filter(kiosk=kiosk).count() == 1
    response = admin_client.post(
        reverse("admin:reception_kiosk_add"),
        {
            "name": "New kiosk",
            "location": "3F",
            "is_active": "on",
            "pairings-TOTAL_FORMS": "0",
            "pairings-INITIAL_FORMS": "0",
        },
        follow=True,
    )
    new_kiosk = Kiosk.objects.get(name="New kiosk")
    assert new_kiosk.key_prefix in response.content.decode()  # the key is shown once, in the message


def test_visitors_see_friendly_voice_path_names_and_staff_the_product_names(client, kiosk_and_key):
    kiosk, _ = kiosk_and_key
    pair(client, kiosk)
    response = client.get("/kiosk/?lang=ja")
    strings = json.loads(re.search(r'id="kiosk-strings"[^>]*>(.*?)</script>', response.content.decode()).group(1))
    assert strings["modes"] == {"realtime": "リアルタイム", "legacy": "標準"}
    with translation.override("ja"):  # the admin's mode column and filters
        assert [str(label) for label in Mode.labels] == ["Realtime", "Legacy"]


@pytest.mark.parametrize(
    ("lang", "question", "labels"),
    [
        ("ja", "本日の受付はいかがでしたか？", ["よかった", "ふつう", "よくなかった", "スキップ"]),
        ("en", "How was the reception today?", ["Good", "Fair", "Poor", "Skip"]),
    ],
)
def test_the_page_offers_an_optional_one_tap_rating_at_the_end(client, kiosk_and_key, lang, question, labels):
    kiosk, _ = kiosk_and_key
    pair(client, kiosk)
    page = client.get(f"/kiosk/?lang={lang}").content.decode()
    panel = re.search(r'<section class="feedback" id="feedback" hidden.*?</section>', page, re.S).group(0)
    assert question in panel
    assert re.findall(r'data-rating="(\d)"', panel) == ["3", "2", "1"]
    assert all(label in panel for label in labels)
    assert "<input" not in panel  # nothing to type: no personal data
