"""The bundled brain answers like the model it stands in for: everything the visitor said since its last completed
reply, so a sentence split by a pause, or a reply cut by barge-in, is understood as a whole."""

from __future__ import annotations

import json
import time

import pytest

from realtime.emulator.audio import silence, speech_for_text, tone
from realtime.emulator.reception_brain import build_reception_brain
from realtime.emulator.responses import unanswered_user_texts
from tests.realtime_support import open_raw

pytest_plugins = ["tests.realtime_fixtures"]
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
    pytest.mark.timeout(60),
]

FRAME = 960  # 20 ms of PCM16 24 kHz
HALVES = {
    "ja": ("株式会社テストの山田太郎です。", "鈴木さんと、十時にお約束があります。", "はい、お願いします。"),
    "en": (
        "Hi, I'm Taro Yamada from Test Corporation.",
        "I have an appointment with Hanako Suzuki at ten.",
        "Yes, that's right.",
    ),
}


def scripted_speech(texts: list[str], *, slow_first: float = 0.0):
    """A `transcribe` that hears `texts` in order; the first takes `slow_first` seconds, as Whisper would, so that
    the visitor goes on speaking while the brain is still answering."""
    heard = list(texts)

    def transcribe(pcm16: bytes, language: str | None) -> str:
        text = heard.pop(0) if heard else ""
        if len(heard) == len(texts) - 1:
            time.sleep(slow_first)
        return text

    return transcribe


def user(text: str, item_id: str = "u") -> dict:
    return {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(item_id: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": []}


def test_user_texts_run_from_the_last_completed_reply():
    items = [user("a"), assistant("said"), user("b"), assistant("cancelled", "incomplete"), user("c")]
    assert unanswered_user_texts(items, set()) == ["b", "c"]
    assert unanswered_user_texts(items, {"said"}) == ["a", "b", "c"]  # truncated by barge-in: not heard
    call = {"id": "f", "type": "function_call", "status": "completed", "call_id": "c1", "arguments": "{}"}
    assert unanswered_user_texts([user("a"), call, user("b")], set()) == ["b"]


@pytest.mark.parametrize("language", ["ja", "en"])
async def test_a_turn_split_by_a_pause_while_the_first_half_is_answered_is_understood_whole(
    realtime_emulator, language
):
    first, second, _ = HALVES[language]
    realtime_emulator.brain = build_reception_brain(
        language,
        transcribe=scripted_speech([first, second], slow_first=0.5),
        synthesize=lambda text, lang: speech_for_text(text),
    )
    raw = await open_raw(realtime_emulator)
    await raw.append(tone(600) + silence(300))  # the VAD (200 ms of silence) ends the turn at the pause
    started = await raw.until("response.created")
    await raw.append(tone(800) + silence(300))  # the rest of the sentence, while the first half is being answered
    cut = await raw.until("response.done")
    answered = await raw.until("response.done")
    await raw.close()

    assert [e["type"] for e in started].count("input_audio_buffer.committed") == 1
    assert cut[-1]["response"]["status"] == "cancelled"
    assert cut[-1]["response"]["status_details"]["reason"] == "turn_detected"
    assert [e["type"] for e in cut].count("input_audio_buffer.committed") == 1
    call = answered[-1]["response"]["output"][0]
    assert answered[-1]["response"]["status"] == "completed" and call["name"] == "collect_visitor_info"
    arguments = json.loads(call["arguments"])
    assert {"visitor_name", "company_name", "host_name", "purpose"} <= arguments.keys(), arguments
    assert "Yamada" in arguments["visitor_name"] or "山田" in arguments["visitor_name"]
    assert "Suzuki" in arguments["host_name"] or "鈴木" in arguments["host_name"]
