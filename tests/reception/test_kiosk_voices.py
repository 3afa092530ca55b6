"""A kiosk's own voices: chosen in the admin among the valid ones only, saved with a reason, blank meaning the
setting's; a choice no longer offered is not used."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from realtime.voices import REALTIME_VOICES
from reception.kiosk_voices import KioskVoices, kiosk_voices

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def change_form(kiosk, **fields: str) -> dict[str, str]:
    form = {
        "name": kiosk.name,
        "location": kiosk.location,
        "is_active": "on",
        "realtime_voice": "",
        "legacy_voice_ja": "",
        "legacy_voice_en": "",
        "pairings-TOTAL_FORMS": "0",
        "pairings-INITIAL_FORMS": "0",
    }
    return form | fields


def test_the_kiosk_page_offers_the_settings_voice_and_the_valid_voices_only(staff, kiosk, settings):
    settings.REALTIME_VOICE = "ash"
    staff.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    form = staff.get(reverse("admin:reception_kiosk_change", args=[kiosk.pk])).context["adminform"].form

    offered = {
        name: list(form.fields[name].choices) for name in ("realtime_voice", "legacy_voice_ja", "legacy_voice_en")
    }

    assert offered["realtime_voice"] == [
        ("", "Default: ash (the REALTIME_VOICE setting)"),
        *((voice, voice) for voice in REALTIME_VOICES),
    ]
    assert [value for value, _label in offered["legacy_voice_ja"]] == ["", "mei_normal"]
    assert [value for value, _label in offered["legacy_voice_en"]] == ["", "en_US-joe-medium"]
    assert offered["legacy_voice_ja"][0][1] == "Default: mei_normal (the LEGACY_VOICE_JA setting)"


def test_the_voice_fields_are_labelled_in_japanese(staff, kiosk):
    staff.defaults["HTTP_ACCEPT_LANGUAGE"] = "ja"
    page = staff.get(reverse("admin:reception_kiosk_change", args=[kiosk.pk])).content.decode()
    for label in (
        "Realtime の音声",
        "ローカル音声（日本語）",
        "ローカル音声（英語）",
        "既定: marin（REALTIME_VOICE の設定）",
    ):
        assert label in page


def test_a_voice_chosen_in_the_admin_is_saved_with_a_reason_in_the_history(staff, kiosk):
    url = reverse("admin:reception_kiosk_change", args=[kiosk.pk])
    chosen = change_form(kiosk, realtime_voice="cedar", legacy_voice_ja="mei_normal")
    refused = staff.post(url, chosen)
    assert refused.status_code == 200 and "change_reason" in refused.context["adminform"].form.errors

    assert staff.post(url, chosen | {"change_reason": "a calmer voice"}).status_code == 302

    kiosk.refresh_from_db()
    assert (kiosk.realtime_voice, kiosk.legacy_voice_ja, kiosk.legacy_voice_en) == ("cedar", "mei_normal", "")
    record = kiosk.history.latest()
    assert record.history_change_reason == "a calmer voice"
    changed = {c.field: (c.old, c.new) for c in record.diff_against(record.prev_record).changes}
    assert changed == {"realtime_voice": ("", "cedar"), "legacy_voice_ja": ("", "mei_normal")}


@pytest.mark.parametrize(
    "field, value",
    [("realtime_voice", "robot"), ("legacy_voice_ja", "en_US-joe-medium"), ("legacy_voice_en", "mei_normal")],
)
def test_a_voice_that_is_not_offered_is_refused(staff, kiosk, field, value):
    url = reverse("admin:reception_kiosk_change", args=[kiosk.pk])
    response = staff.post(url, change_form(kiosk, **{field: value}, change_reason="try"))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    kiosk.refresh_from_db()
    assert getattr(kiosk, field) == ""


def test_a_blank_choice_is_the_settings_voice_and_a_kiosks_own_wins(kiosk, settings):
    settings.REALTIME_VOICE = "ash"
    assert kiosk_voices(kiosk.pk) == KioskVoices("ash", {"ja": "mei_normal", "en": "en_US-joe-medium"})
    assert kiosk_voices(None) == kiosk_voices(kiosk.pk)
    kiosk.realtime_voice = "cedar"
    kiosk.save()
    assert kiosk_voices(kiosk.pk).realtime == "cedar"


def test_a_choice_no_longer_offered_falls_back_to_the_setting_with_a_warning(kiosk, settings, caplog):
    kiosk.realtime_voice, kiosk.legacy_voice_en = "cedar", "en_US-retired-voice"
    kiosk.save()
    settings.REALTIME_VOICE_CHOICES = ("marin", "ash")  # a later release without cedar
    with caplog.at_level(logging.WARNING, logger="reception.kiosk_voices"):
        voices = kiosk_voices(kiosk.pk)
    assert voices == KioskVoices(settings.REALTIME_VOICE, {"ja": "mei_normal", "en": "en_US-joe-medium"})
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "'cedar' is no longer offered" in warned and "'en_US-retired-voice' is no longer offered" in warned
