"""A kiosk's voices reach its sessions: the voice of the Realtime `session.update` the upstream receives, and the
local voice the Legacy path speaks the session's language in. A blank choice is the setting's voice."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from fallback.emergency import apply_action
from realtime.emulator.audio import tone
from realtime.emulator.reception_brain import build_reception_brain
from reception.models import Kiosk
from reception.workflow.prompts import say
from speech.engines import SpeechEngines
from speech.model_files import OPENJTALK_VOICE
from speech.tts import LocalTTS, split_sentences
from speech.voices import LOCAL_VOICES, LocalVoice
from tests.support.kiosk_client import collect_turn, connect
from tests.support.realtime import assert_no_leaked_tasks

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory", "reference_prices"),
]


async def greeted(key: str, language: str = "ja", *, voice: bool = False) -> list[dict]:
    """Start a session on the kiosk of `key`, take its greeting, and end it."""
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "language": language, "voice": voice})
    messages, _ = await collect_turn(ws)
    await ws.disconnect()
    return messages


# --- Realtime -----------------------------------------------------------------------------------------------------


@pytest.fixture
async def realtime_for_everyone(realtime_emulator, settings):
    """Every session on Realtime, upstream the bundled emulator (its reception brain, tones for speech)."""
    realtime_emulator.config.accepted_keys = None
    realtime_emulator.brain = build_reception_brain(
        transcribe=lambda pcm, language: "", synthesize=lambda text, language: tone(max(200, 60 * len(text)))
    )
    settings.REALTIME_API_URL = realtime_emulator.url
    await database_sync_to_async(apply_action)("enable", actor="test", reason="voices", percent=100)
    return realtime_emulator


@pytest.mark.parametrize(
    ("chosen", "setting", "spoken"),
    [("cedar", "marin", "cedar"), ("", "ash", "ash")],
    ids=["the-kiosks-own", "blank-is-the-setting"],
)
async def test_a_realtime_session_asks_the_upstream_for_its_kiosks_voice(
    realtime_for_everyone, kiosk_and_key, settings, chosen, setting, spoken
):
    settings.REALTIME_VOICE = setting
    kiosk, key = kiosk_and_key
    kiosk.realtime_voice = chosen
    await kiosk.asave()

    messages = await greeted(key)

    assert messages[0]["mode"] == "realtime" and messages[-1] == {"type": "response.done", "status": "completed"}
    updates = [event["session"] for event in realtime_for_everyone.received if event["type"] == "session.update"]
    assert [update["audio"]["output"]["voice"] for update in updates] == [spoken]
    session = await realtime_for_everyone.wait_for_session()
    assert session.config["audio"]["output"]["voice"] == spoken  # the emulator took it ...
    created = [event for event in realtime_for_everyone.sent if event["type"] == "response.created"]
    assert created and {event["response"]["audio"]["output"]["voice"] for event in created} == {spoken}  # ... and spoke
    await assert_no_leaked_tasks()


# --- Legacy -------------------------------------------------------------------------------------------------------


class RecordingVoice:
    """A local voice without a model: records what it was given to say."""

    sample_rate = 24_000

    def __init__(self, voice: str) -> None:
        self.voice = voice
        self.said: list[str] = []

    def synthesize(self, text: str, language: str) -> bytes:
        self.said.append(text)
        return b"\x00\x00" * 480


@pytest.fixture
def local_voices(monkeypatch) -> dict[str, RecordingVoice]:
    """The Legacy engines, with a second Japanese voice installed besides Mei ("mei_test": Mei's model file under
    another name), each voice recording what it says."""
    monkeypatch.setitem(
        LOCAL_VOICES, "mei_test", LocalVoice("mei_test", "ja", "openjtalk", "Mei (test)", (OPENJTALK_VOICE,))
    )
    voices = {name: RecordingVoice(name) for name in ("mei_normal", "en_US-joe-medium", "mei_test")}
    default = LocalTTS(voices["mei_normal"], voices["en_US-joe-medium"])
    engines = SpeechEngines(kind="local", stt=None, tts=default, vad_factory=None, voice_engines=dict(voices))
    monkeypatch.setattr("voice.legacy.legacy_engines", lambda: engines)
    return voices


async def test_a_legacy_session_speaks_in_its_kiosks_local_voice_and_keeps_its_phrases_per_voice(
    local_voices, kiosk_and_key
):
    kiosk, key = kiosk_and_key
    kiosk.legacy_voice_ja = "mei_test"
    await kiosk.asave()
    other = Kiosk(name="Lobby 3F")
    other_key = other.set_new_key()
    await other.asave()
    greeting = split_sentences(say("greeting", "ja"), "ja")

    assert (await greeted(key, voice=True))[0]["mode"] == "legacy"
    assert local_voices["mei_test"].said == greeting and not local_voices["mei_normal"].said

    await greeted(other_key, voice=True)  # a kiosk without a choice: the setting's voice
    assert local_voices["mei_normal"].said == greeting

    await greeted(key, voice=True)  # the greeting was kept for each voice: neither says it again
    assert local_voices["mei_test"].said == local_voices["mei_normal"].said == greeting

    await greeted(key, "en", voice=True)  # the kiosk chose no English voice
    assert local_voices["en_US-joe-medium"].said == split_sentences(say("greeting", "en"), "en")
