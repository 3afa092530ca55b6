"""The voice settings: REALTIME_VOICE and the local voice per language default to what ships, take any voice that is
available, and stop the start with the setting's name and the valid values for one that is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.live_server import REPO

VOICE_SETTINGS = ("REALTIME_VOICE", "LEGACY_VOICE_JA", "LEGACY_VOICE_EN")


def load_settings(**environment: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh process with `environment` (and none of the voice settings otherwise)."""
    env = {key: value for key, value in os.environ.items() if key not in VOICE_SETTINGS}
    env.update(environment, DJANGO_SETTINGS_MODULE="reception_project.settings")
    script = "from django.conf import settings as s; import json; print(json.dumps([getattr(s, n) for n in %r]))"
    return subprocess.run(
        [sys.executable, "-c", script % (VOICE_SETTINGS,)], cwd=REPO, env=env, capture_output=True, text=True
    )


def voices(**environment: str) -> list[str]:
    result = load_settings(**environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_voices_default_to_marin_and_the_voices_that_ship():
    assert voices() == ["marin", "mei_normal", "en_US-joe-medium"]
    assert voices(REALTIME_VOICE="", LEGACY_VOICE_JA="") == ["marin", "mei_normal", "en_US-joe-medium"]  # as templated


def test_any_realtime_voice_of_the_api_is_taken():
    assert voices(REALTIME_VOICE="cedar")[0] == "cedar"


@pytest.mark.parametrize(
    ("setting", "value", "valid"),
    [
        (
            "REALTIME_VOICE",
            "robot",
            "valid values: alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar",
        ),
        ("LEGACY_VOICE_JA", "en_US-joe-medium", "not a local Japanese voice; valid values: mei_normal"),
        ("LEGACY_VOICE_EN", "en_US-lessac-medium", "not a local English voice; valid values: en_US-joe-medium"),
    ],
)
def test_a_voice_that_is_not_available_stops_the_start_naming_the_setting_and_the_valid_ones(setting, value, valid):
    result = load_settings(**{setting: value})
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"django.core.exceptions.ImproperlyConfigured: {setting}: {value!r} ")
    assert last_line.endswith(valid)
