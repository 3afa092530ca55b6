"""Synthesised phrases kept for reuse: what the kiosk says again and again is synthesised once per voice.

A least-recently-used table keyed by (text, language, voice), thread-safe, bounded by entry count. The caller
chooses what goes in: fixed phrases only (greeting, prompts), never sentences that carry a visitor's details.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .tts import TextToSpeech

DEFAULT_SIZE = 128  # sentences; a Japanese prompt sentence is 100-200 kB of 24 kHz PCM16


def voice_of(tts: TextToSpeech, language: str) -> str:
    """The voice that says `language`: the engine behind it and its model, voice and speed where it has them."""
    engine_for = getattr(tts, "engine_for", None)
    engine = engine_for(language) if engine_for is not None else tts
    traits = (f"{name}={getattr(engine, name)}" for name in ("model", "voice", "speed") if hasattr(engine, name))
    return ";".join((type(engine).__name__, *traits))


class SynthesisCache:
    """`synthesize(text, language)` through `tts`, each phrase synthesised once while it stays among the
    `size` most recently used."""

    def __init__(self, tts: TextToSpeech, size: int = DEFAULT_SIZE) -> None:
        self.tts = tts
        self.size = size
        self._audio: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def synthesize(self, text: str, language: str, tts: TextToSpeech | None = None) -> bytes:
        """`text` in `language`, said by `tts` (a session's own voices) or else by the cache's."""
        tts = tts or self.tts
        key = (text, language, voice_of(tts, language))
        with self._lock:
            audio = self._audio.get(key)
            if audio is not None:
                self._audio.move_to_end(key)
                return audio
        audio = tts.synthesize(text, language)
        with self._lock:
            self._audio[key] = audio
            while len(self._audio) > self.size:
                self._audio.popitem(last=False)
        return audio
