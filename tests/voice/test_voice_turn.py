"""Whole voice turns through the kiosk socket on the Legacy path, with the local speech engines."""

from __future__ import annotations

import base64

import pytest

from reception.models import Visit
from reception.workflow.names import reading_of
from speech.engines import legacy_engines
from tests.support.kiosk_client import collect_turn, connect, last

pytestmark = [
    pytest.mark.speech,
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("isolated_workflow_state"),
]

FRAME = 960  # 20 ms of PCM16 at 24 kHz
SPEECH_WAIT = 60  # seconds for a turn that runs speech recognition and synthesis


@pytest.fixture(scope="module")
def voices() -> dict[str, bytes]:
    """Visitor utterances spoken by the local text-to-speech (PCM16 24 kHz)."""
    tts = legacy_engines().tts
    return {
        "ja_name": tts.synthesize("株式会社テストの山田太郎です。", "ja"),
        "en_name": tts.synthesize("My name is John Smith from Acme Corp.", "en"),
    }


def silence(seconds: float) -> bytes:
    return bytes(int(24000 * seconds) * 2)


async def start(ws, language: str, voice: bool = False) -> bytes:
    await ws.send_json_to({"type": "session.start", "language": language, "voice": voice})
    assert (await ws.receive_json_from(timeout=10))["type"] == "session.started"
    _, audio = await collect_turn(ws, SPEECH_WAIT)
    return audio


async def test_spoken_name_reaches_the_visit_and_the_answer_is_spoken(demo_directory, kiosk_and_key, voices):
    _, key = kiosk_and_key
    ws = await connect(key)
    assert await start(ws, "ja") == b""  # a typing kiosk gets no audio
    speech = silence(0.3) + voices["ja_name"] + silence(1.2)
    for offset in range(0, len(speech), FRAME):
        await ws.send_to(bytes_data=speech[offset : offset + FRAME])
    messages, audio = await collect_turn(ws, SPEECH_WAIT)
    heard = last(messages, "transcript", "visitor")["text"]
    # Heard as said, if not always as written: Whisper's int8 output differs with the CPU's instruction set, and with
    # this prompt some write 山田 「ヤマだ」 or 「山だ」; the visit below holds 山田, reconciled by its reading.
    assert "やまだ" in reading_of(heard), heard
    visit = last(messages, "visit.updated")
    assert visit["visitor_name"].replace(" ", "").startswith("山田"), visit
    assert last(messages, "response.done")["status"] == "completed"
    assert len(audio) > 24000 * 2 * 0.5  # at least half a second of the assistant's voice
    record = await Visit.objects.aget(session_id=(await _session_id(ws)))
    assert record.visitor_name.replace(" ", "").startswith("山田")
    await ws.disconnect()


async def _session_id(ws) -> str:
    await ws.send_json_to({"type": "session.end"})
    ended = await ws.receive_json_from(timeout=10)
    return await Visit.objects.filter(pk=ended["visit_id"]).values_list("session_id", flat=True).aget()


async def test_push_to_talk_with_base64_audio_and_commit(demo_directory, kiosk_and_key, voices):
    _, key = kiosk_and_key
    ws = await connect(key)
    assert len(await start(ws, "en", voice=True)) > 0  # a voice kiosk hears the greeting
    await ws.send_json_to({"type": "input_audio.commit"})
    assert (await ws.receive_json_from(timeout=10))["code"] == "input_audio_empty"
    speech = voices["en_name"]
    for offset in range(0, len(speech), FRAME * 10):
        chunk = base64.b64encode(speech[offset : offset + FRAME * 10]).decode()
        await ws.send_json_to({"type": "input_audio.append", "audio": chunk})
    await ws.send_json_to({"type": "input_audio.commit"})
    messages, audio = await collect_turn(ws, SPEECH_WAIT)
    assert "smith" in last(messages, "transcript", "visitor")["text"].lower()
    assert last(messages, "visit.updated")["visitor_name"] == "John Smith"
    assert audio
    await ws.disconnect()


async def test_cancel_stops_the_spoken_reply(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = await connect(key)
    await start(ws, "ja", voice=True)
    await ws.send_json_to(
        {"type": "input_text", "text": "株式会社テストの山田太郎です。鈴木さんと十時にお約束があります。"}
    )
    # Wait for the first audio of the reply, then interrupt.
    while (await ws.receive_output(timeout=60)).get("bytes") is None:
        pass
    await ws.send_json_to({"type": "response.cancel"})
    messages, _ = await collect_turn(ws, SPEECH_WAIT)
    assert last(messages, "response.done")["status"] == "cancelled"
    # Nothing more arrives after the cancelled turn.
    assert await ws.receive_nothing(timeout=1.0)
    await ws.disconnect()


async def test_odd_or_invalid_audio_is_refused(demo_directory, kiosk_and_key):
    _, key = kiosk_and_key
    ws = await connect(key)
    await start(ws, "en")
    await ws.send_to(bytes_data=b"\x00\x01\x02")
    assert (await ws.receive_json_from(timeout=10))["code"] == "invalid_audio"
    await ws.send_json_to({"type": "input_audio.append", "audio": "***not base64***"})
    assert (await ws.receive_json_from(timeout=10))["code"] == "invalid_audio"
    await ws.disconnect()
