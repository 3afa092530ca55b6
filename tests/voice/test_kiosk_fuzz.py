"""Bad input, fuzzed: 1,000 kiosk payloads through the real consumer (hypothesis).

Text and binary frames of any size, JSON of any shape and encoding, in any order. After each payload a
valid `input_text` must still be answered (the socket stays usable), no exception may escape the consumer,
and the voice path (what the consumer forwards upstream) must only ever receive valid input.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reception_project.asgi import application
from speech.engines import SpeechEngines
from voice.hybrid import HybridVoiceManager
from voice.protocol import CLIENT_MESSAGE_TYPES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_workflow_state")]

MAX_FRAME = 4096  # a small cap, so oversized frames are cheap to make


class QuietVAD:
    """Hears no speech: fuzzed audio is accepted or refused, never transcribed."""

    sample_rate, frame_samples = 16_000, 512

    def speech_probability(self, frame: np.ndarray) -> float:
        return 0.0

    def reset(self) -> None:
        pass


class QuickVoice:
    sample_rate = 24_000

    def synthesize(self, text: str, language: str) -> bytes:
        return b"\x00\x00" * 480


@dataclass
class Upstream:
    """What the consumer forwarded to the voice path, and any of it that was invalid."""

    audio_bytes: int = 0
    texts: int = 0
    invalid: list[str] = field(default_factory=list)

    def audio(self, pcm16: object) -> None:
        if not isinstance(pcm16, bytes) or not 0 < len(pcm16) <= MAX_FRAME or len(pcm16) % 2:
            self.invalid.append(f"audio {type(pcm16).__name__} of {len(pcm16)} bytes")
        self.audio_bytes += len(pcm16)

    def text(self, text: object) -> None:
        try:
            valid = isinstance(text, str) and 0 < len(text) <= 1000 and text == text.strip() and text.encode()
        except UnicodeEncodeError:
            valid = False
        if not valid:
            self.invalid.append(f"text {text!r:.80}")
        self.texts += 1


@pytest.fixture
def upstream(monkeypatch, settings, demo_directory):
    settings.KIOSK_MAX_FRAME_BYTES = MAX_FRAME
    recorded = Upstream()

    class RecordingVoicePath(HybridVoiceManager):
        async def feed_audio(self, pcm16: bytes) -> None:
            recorded.audio(pcm16)
            await super().feed_audio(pcm16)

        async def handle_text(self, text: str) -> None:
            recorded.text(text)
            await super().handle_text(text)

    engines = SpeechEngines(kind="local", stt=None, tts=QuickVoice(), vad_factory=QuietVAD)
    monkeypatch.setattr("voice.legacy.legacy_engines", lambda: engines)
    monkeypatch.setattr("voice.consumers.HybridVoiceManager", RecordingVoicePath)
    return recorded


def json_text(value: object) -> st.SearchStrategy[str]:
    return st.booleans().map(lambda ascii_only: json.dumps(value, ensure_ascii=ascii_only))


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
audio_field = st.one_of(
    st.binary(max_size=MAX_FRAME + 64).map(lambda b: base64.b64encode(b).decode()),  # odd, even, empty, too big
    st.text(max_size=60),  # not base64
    st.sampled_from(["AAA", "====", "AA==AA==", "QUJD\n", "\\ud800"]),
    json_values,
)
text_field = st.one_of(
    st.text(max_size=60),
    st.text(min_size=995, max_size=1010),
    st.sampled_from(["   ", "\ud800", "名前は\udfffです", "\x00", "\u202e"]),
    json_values,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from([*CLIENT_MESSAGE_TYPES, "", "teleport", "SESSION.START", "input_text "])},
    optional={
        "text": text_field,
        "audio": audio_field,
        "session_id": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{0,70}", fullmatch=True), json_values),
        "language": st.one_of(st.sampled_from(["ja", "en", "fr", ""]), json_values),
        "voice": json_values,
    },
)
text_frames = st.one_of(
    messages.flatmap(json_text),
    json_values.flatmap(json_text),  # JSON that is not a message object
    st.text(max_size=200),  # not JSON at all
    st.text(min_size=MAX_FRAME - 10, max_size=MAX_FRAME + 10),  # around the size cap (in characters)
)


def on_the_wire(text: str) -> bool:
    """A text frame is UTF-8 on the wire (the server closes a socket that sends anything else): no lone surrogates
    in the frame itself, though its JSON may escape them."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


frames = st.lists(
    st.one_of(
        text_frames.filter(on_the_wire).map(lambda t: ("text", t)),
        st.binary(max_size=MAX_FRAME + 64).map(lambda b: ("bytes", b)),
    ),
    min_size=1,
    max_size=4,
)


class Kiosk:
    """One kiosk connection reused across examples; reopened when a payload ended its session."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.ws: WebsocketCommunicator | None = None
        self.probes = 0

    async def open(self) -> None:
        self.ws = WebsocketCommunicator(
            application, "/ws/kiosk/", headers=[(b"authorization", f"Bearer {self.key}".encode())]
        )
        assert (await self.ws.connect())[0]
        await self.ws.send_json_to({"type": "session.start", "language": "en"})
        await self.read_until(lambda m: m["type"] == "response.done")

    async def read_until(self, done) -> bool:
        """Messages until `done(message)`; False if the server closed the socket first."""
        while True:
            output = await self.ws.receive_output(timeout=10)
            if output["type"] == "websocket.close":
                assert output.get("code", 1000) == 1000, output  # only session.end closes, normally
                return False
            if output.get("text") is None:
                continue
            message = json.loads(output["text"])
            assert isinstance(message.get("type"), str), message
            if message["type"] == "error":
                assert message["code"] and message["message"], message
            if done(message):
                return True

    async def probe(self) -> None:
        """A valid turn is answered: the socket is still usable."""
        self.probes += 1
        text = f"probe {self.probes}"
        await self.ws.send_json_to({"type": "input_text", "text": text})
        heard = False

        def answered_probe(message: dict) -> bool:
            nonlocal heard
            heard = heard or (message["type"] == "transcript" and message["text"] == text)
            return heard and message["type"] == "response.done"

        answered = await self.read_until(answered_probe)
        if not answered:  # the payload ended the session: a new one works
            await self.reopen()
            await self.probe()

    async def reopen(self) -> None:
        await self.ws.disconnect()
        await self.open()


@pytest.fixture
async def kiosk(kiosk_and_key, upstream):
    kiosk = Kiosk(kiosk_and_key[1])
    await kiosk.open()
    yield kiosk
    await kiosk.ws.disconnect()


@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(payload=frames)
async def test_any_kiosk_payload_leaves_the_socket_usable_and_forwards_nothing_invalid(kiosk, upstream, payload):
    if kiosk.probes % 100 == 99:  # a fresh conversation now and then keeps each one short
        await kiosk.reopen()
    for kind, frame in payload:
        await kiosk.ws.send_input({"type": "websocket.receive", kind: frame})  # empty frames too
    await kiosk.probe()
    assert not upstream.invalid, upstream.invalid
