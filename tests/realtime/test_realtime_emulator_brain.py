"""The bundled brain answers like the model it stands in for: everything the visitor said since its last completed
reply, so a sentence split by a pause, or a reply cut by barge-in, is understood as a whole."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from realtime.client import SERVER_VAD, RealtimeClient
from realtime.emulator import BrainContext, Say
from realtime.emulator.audio import silence, speech_for_text, tone
from realtime.emulator.reception_brain import _expecting, build_reception_brain, tool_call
from realtime.emulator.responses import unanswered_user_texts
from realtime.processor import RealtimeAudioProcessor
from reception.models import Visit
from reception.workflow.prompts import field_list, say
from reception.workflow.state import VISIT_FIELDS
from reception.workflow.understanding import EXPECT_CONFIRMATION, Understanding
from speech.stt import Transcript
from tests.support.corpus import Line
from tests.support.realtime import TEST_KEY, FakeKiosk, open_raw
from tests.support.spoken import Microphone, spoken

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


async def speak(processor: RealtimeAudioProcessor, pcm: bytes, *, pause_ms: int = 800) -> None:
    """`pcm` then `pause_ms` of silence, in real time as a kiosk microphone sends them."""
    speech = pcm + silence(pause_ms)
    for start in range(0, len(speech), FRAME):
        await processor.feed_audio(speech[start : start + FRAME])
        await asyncio.sleep(0.02)


async def played_out(processor: RealtimeAudioProcessor) -> None:
    playback = processor.replies.playback
    if playback is not None:
        await asyncio.sleep(max(0.0, playback.ends_at() - time.monotonic()))


def kiosk_processor(server, kiosk: FakeKiosk, language: str, failures: list) -> RealtimeAudioProcessor:
    return RealtimeAudioProcessor(
        f"split-{language}",
        language,
        kiosk,
        speak=True,
        client_factory=lambda **options: RealtimeClient(api_key=TEST_KEY, base_url=server.base_url, **options),
        on_failure=lambda reason, error: failures.append((reason, error)),
        turn_detection={**SERVER_VAD, "silence_duration_ms": 300},  # a 400 ms pause ends the turn
    )


async def assert_visit_completed(session_id: str) -> None:
    visit = await Visit.objects.select_related("host").aget(session_id=session_id)
    assert visit.status == Visit.Status.HOST_NOTIFIED and visit.appointment_found
    assert "山田" in visit.visitor_name or "Yamada" in visit.visitor_name, visit.visitor_name
    assert "テスト" in visit.company_name or "Test" in visit.company_name, visit.company_name
    assert visit.host is not None and visit.host.name == "鈴木 花子"


@pytest.mark.parametrize("language", ["ja", "en"])
async def test_a_visitor_who_pauses_mid_sentence_is_received_in_realtime_mode(realtime_emulator, language):
    """The issue's story: the VAD ends the turn at the pause, the second half arrives while the brain answers the
    first; the cut reply is redone with both halves, so nothing is lost and nothing is asked twice."""
    first, second, yes = HALVES[language]
    realtime_emulator.brain = build_reception_brain(
        language, transcribe=scripted_speech([first, second, yes], slow_first=0.5), synthesize=lambda t, lang: tone(300)
    )
    kiosk, failures = FakeKiosk(), []
    processor = kiosk_processor(realtime_emulator, kiosk, language, failures)
    try:
        await processor.open(None)
        await kiosk.wait_for("response.done")
        await played_out(processor)
        await speak(processor, tone(600), pause_ms=400)
        await speak(processor, tone(800))
        confirming = await kiosk.wait_for("visit.updated", status="confirming", within=15)
        await kiosk.wait_for("transcript", role="assistant", final=True, count=2, within=15)
        await played_out(processor)
        await speak(processor, tone(400))
        await kiosk.wait_for("visit.updated", status="host_notified", within=15)
    finally:
        await processor.close()
    assert confirming["visitor_name"] and confirming["company_name"] and confirming["host_name"], confirming
    calls = [e for e in realtime_emulator.sent if e["type"] == "response.function_call_arguments.done"]
    assert len(json.loads(calls[0]["arguments"])) == 4, calls  # one call with name, company, host and purpose
    done = [e["response"]["status"] for e in realtime_emulator.sent if e["type"] == "response.done"]
    assert done[:3] == ["completed", "cancelled", "completed"], done  # the answer to the first half alone was cut
    assert len(kiosk.of_type("visit.updated", status="collecting")) <= 1  # the start only: no half-collected visit
    assert failures == []
    await assert_visit_completed(f"split-{language}")


async def test_a_reply_cut_by_barge_in_is_not_asked_again(realtime_emulator):
    """The first half is answered and its question spoken; the visitor talks over it with the rest. The question cut
    by the barge-in is not counted as heard, and what follows carries the visit on without asking again."""
    first, second, yes = HALVES["ja"]
    realtime_emulator.brain = build_reception_brain(
        "ja", transcribe=scripted_speech([first, second, yes]), synthesize=lambda text, lang: speech_for_text(text)
    )
    kiosk, failures = FakeKiosk(), []
    processor = kiosk_processor(realtime_emulator, kiosk, "ja", failures)
    try:
        await processor.open(None)
        await kiosk.wait_for("response.done")
        await speak(processor, tone(600))  # over the greeting: the greeting is cut too
        asked = await kiosk.wait_for("transcript", role="assistant", final=True, count=2, within=15)
        await speak(processor, tone(800))  # over the question
        await kiosk.wait_for("visit.updated", status="confirming", within=15)
        await kiosk.wait_for("transcript", role="assistant", final=True, count=3, within=15)
        await played_out(processor)
        await speak(processor, tone(400))
        await kiosk.wait_for("visit.updated", status="host_notified", within=15)
    finally:
        await processor.close()
    replies = [m["text"] for m in kiosk.of_type("transcript", role="assistant", final=True)]
    assert "お名前" not in asked["text"] and all("お名前" not in text for text in replies[2:]), replies
    assert len(kiosk.of_type("response.done", status="cancelled")) >= 2  # the greeting and the question were cut
    assert [e for e in realtime_emulator.received if e["type"] == "conversation.item.truncate"]
    assert failures == []
    await assert_visit_completed("split-ja")


async def test_a_reply_truncated_by_the_client_is_answered_again_with_what_followed(realtime_emulator):
    brain = realtime_emulator.brain  # the fixture's ScriptedBrain records what each response was given
    raw = await open_raw(realtime_emulator)
    await raw.send({"type": "conversation.item.create", "item": user("山田です") | {"id": "item_a"}})
    await raw.send({"type": "response.create"})
    said = (await raw.until("response.done"))[-1]["response"]["output"][0]
    await raw.send(
        {"type": "conversation.item.truncate", "item_id": said["id"], "content_index": 0, "audio_end_ms": 60}
    )
    await raw.until("conversation.item.truncated")
    await raw.send({"type": "conversation.item.create", "item": user("テストから来ました") | {"id": "item_b"}})
    await raw.send({"type": "response.create"})
    await raw.until("response.done")
    await raw.send({"type": "conversation.item.create", "item": user("鈴木さんに") | {"id": "item_c"}})
    await raw.send({"type": "response.create"})
    await raw.until("response.done")
    await raw.close()
    assert [list(context.user_texts) for context in brain.contexts] == [
        ["山田です"],
        ["山田です", "テストから来ました"],  # the first reply was cut: it does not count as answered
        ["鈴木さんに"],
    ]


# --- the server VAD and the transcript of a brain on the local engines ------------------------------------------


def lobby_noise(ms: int) -> bytes:
    """Pink noise at about a third of conversational speech's level (10 dB below it): loud for an energy VAD."""
    microphone = Microphone()
    microphone.hear(Line("", noise="high"), tone(1000, amplitude=0.18))
    return b"".join(microphone.frames(silence(ms)))


async def vad_events(server, pcm: bytes) -> list[str]:
    """The server VAD's events for `pcm` (then a clear, answered at once, marks the end)."""
    raw = await open_raw(server)
    await raw.append(pcm)
    await raw.send({"type": "input_audio_buffer.clear"})
    events = await raw.until("input_audio_buffer.cleared", within=30)
    await raw.close()
    return [e["type"] for e in events if e["type"].startswith("input_audio_buffer.speech")]


async def test_the_reception_brains_server_vad_hears_no_turn_in_lobby_noise(realtime_emulator):
    noise = lobby_noise(2000)
    assert await vad_events(realtime_emulator, noise) == ["input_audio_buffer.speech_started"]  # the energy VAD
    realtime_emulator.brain = build_reception_brain(synthesize=lambda text, lang: tone(300))
    assert await vad_events(realtime_emulator, noise) == []  # Silero: noise is no speech


@pytest.mark.speech
async def test_the_reception_brains_server_vad_ends_a_turn_spoken_over_lobby_noise(realtime_emulator):
    realtime_emulator.brain = build_reception_brain(synthesize=lambda text, lang: tone(300))
    microphone = Microphone()
    line = Line("株式会社テストの山田太郎です。", noise="high")
    speech = spoken(line, "ja")
    microphone.hear(line, speech)
    pcm = b"".join(microphone.frames(silence(300) + speech + silence(1000)))
    events = await vad_events(realtime_emulator, pcm)
    assert events == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"]


@pytest.mark.speech
def test_the_reception_brains_server_vad_hears_a_short_yes_after_a_conversation():
    """A visit's lines over lobby noise, each after 8 s of the room, on one stream: the last 「はい」 is speech too."""
    detector = build_reception_brain(synthesize=lambda text, lang: tone(300)).speech_detector()
    microphone, speech_frames = Microphone(), []
    for text in ("株式会社テストの山田太郎と申します。", "鈴木さんと十時にお約束しています。", "はい。"):
        line = Line(text, 0.85, "high")
        speech = spoken(line, "ja")
        microphone.hear(line, speech)
        assert not any(detector(frame) for frame in microphone.frames(silence(8000)))  # the room is no speech
        speech_frames.append(sum(detector(frame) for frame in microphone.frames(silence(300) + speech)))
    assert all(count >= 5 for count in speech_frames), speech_frames  # ≥ 100 ms; the stale state heard 0


class HeardEngines:
    """Speech engines whose recognition hears `transcript` (SimpleNamespace-like: only `.stt` is used)."""

    def __init__(self, transcript: Transcript) -> None:
        self.stt = self
        self.transcript = transcript

    def transcribe(self, pcm16_16k: bytes, language: str, hint: str | None = None) -> Transcript:
        return self.transcript


@pytest.mark.parametrize(
    ("heard", "text"),
    [
        (Transcript("鈴木さんです。", "ja", 1.0, 0.1, no_speech_prob=0.05, avg_logprob=-0.2), "鈴木さんです。"),
        (Transcript("受付です。", "ja", 1.0, 0.1, no_speech_prob=0.7, avg_logprob=-0.8), ""),  # noise, made words
        (Transcript("Reception.", "en", 1.0, 0.1, no_speech_prob=0.2, avg_logprob=-1.4), ""),  # the prompt echoed
    ],
)
async def test_the_reception_brain_transcribes_only_what_whisper_is_sure_is_speech(monkeypatch, heard, text):
    monkeypatch.setattr("realtime.emulator.reception_brain.legacy_engines", lambda: HeardEngines(heard))
    brain = build_reception_brain(synthesize=lambda text, lang: tone(300))
    assert await brain.transcribe(tone(1000), heard.language) == text


@pytest.mark.parametrize(
    ("output", "asked"),
    [
        ({"awaiting": "confirmation", "missing": []}, say("confirm_unclear", "ja")),
        ({"awaiting": "host_name", "missing": ["host_name"]}, say("ask_unclear", "ja", fields="訪問先の担当者名")),
        ({}, say("ask_unclear", "ja", fields=field_list(list(VISIT_FIELDS), "ja"))),  # before any tool call
    ],
)
async def test_words_the_reception_brain_cannot_use_ask_the_pending_question_again(output, asked):
    brain = build_reception_brain(transcribe=lambda pcm, language: "", synthesize=lambda text, lang: tone(300))
    call = {"type": "function_call_output", "call_id": "c", "output": json.dumps(output)}
    context = BrainContext(items=[call], tools=[], instructions="", language="ja", user_texts=[""])
    assert await brain.respond(context) == Say(asked)


def test_a_lone_delivery_word_at_the_read_back_is_asked_again_not_reported():
    """The brain makes the call a model would: 「お届け物。」 (a noisy 「はい、お願いします」) is no delivery while the
    details are read back; 「いいえ、お届け物です」 is, and so is a delivery said at any other time."""
    parcel = Understanding(visitor_type=Visit.VisitorType.DELIVERY, purpose="お届け物")
    token = _expecting.set(EXPECT_CONFIRMATION)
    try:
        assert tool_call(parcel) is None
        assert tool_call(Understanding(visitor_type=Visit.VisitorType.DELIVERY, answer=False))[0] == "report_delivery"
    finally:
        _expecting.reset(token)
    assert tool_call(parcel)[0] == "report_delivery"
