"""A whole reception by voice on the Realtime path: kiosk audio → processor → emulator (server VAD, Whisper, the
rule-based understanding, function calls) → bridge → workflow → Visit and host notification, all offline."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.client import SERVER_VAD, RealtimeClient
from realtime.emulator.audio import silence
from realtime.emulator.reception_brain import build_reception_brain
from realtime.processor import RealtimeAudioProcessor
from reception.models import HostNotification, Visit
from reception.workflow.names import reading_of
from speech.engines import legacy_engines
from tests.support.realtime import TEST_KEY, FakeKiosk

pytestmark = [
    pytest.mark.speech,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
    pytest.mark.timeout(240),
]

FRAME = 960  # 20 ms of PCM16 24 kHz
TURN_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def voices() -> dict[str, bytes]:
    """The visitor's sentences, spoken by the local text-to-speech (PCM16 24 kHz)."""
    tts = legacy_engines().tts
    return {
        "introduction": tts.synthesize("株式会社テストの山田です。", "ja"),
        "appointment": tts.synthesize("鈴木さんとお約束しています。", "ja"),
        "yes": tts.synthesize("はい、お願いします。", "ja"),
        "name": tts.synthesize("株式会社テストの山田太郎です。", "ja"),
        "host": tts.synthesize("鈴木さんと、十時にお約束があります。", "ja"),
    }


async def say(processor: RealtimeAudioProcessor, kiosk: FakeKiosk, *pcm: bytes) -> None:
    """Wait until the kiosk has played the assistant out, then speak `pcm` (pieces apart by a 600 ms pause) and one
    second of silence, in real time as a kiosk microphone does."""
    playback = processor.replies.playback
    if playback is not None:
        await asyncio.sleep(max(0.0, playback.ends_at() - time.monotonic()))  # the kiosk plays at 1x
    speech = silence(200) + silence(600).join(pcm) + silence(1000)
    for start in range(0, len(speech), FRAME):
        await processor.feed_audio(speech[start : start + FRAME])
        await asyncio.sleep(0.02)  # 20 ms frames in real time: the pacing is part of what is tested


def voice_processor(server, kiosk: FakeKiosk, failures: list, silence_ms: int) -> RealtimeAudioProcessor:
    server.brain = build_reception_brain()
    return RealtimeAudioProcessor(
        "voice-reception",
        "ja",
        kiosk,
        speak=True,
        client_factory=lambda **options: RealtimeClient(api_key=TEST_KEY, base_url=server.base_url, **options),
        on_failure=lambda reason, error: failures.append((reason, error)),
        turn_detection={**SERVER_VAD, "silence_duration_ms": silence_ms},
        stall_seconds=TURN_TIMEOUT,
        latency_budget_seconds=TURN_TIMEOUT,
    )


async def test_a_visitor_is_received_by_voice_in_realtime_mode(realtime_emulator, voices):
    kiosk = FakeKiosk()  # the emulator's teardown checks that no asyncio task is left
    failures: list[tuple[str, Exception | None]] = []
    # The pause between two sentences is one turn.
    processor = voice_processor(realtime_emulator, kiosk, failures, silence_ms=800)
    try:
        await processor.open(None)
        await kiosk.wait_for("response.done", within=TURN_TIMEOUT)
        assert "いらっしゃいませ" in kiosk.of_type("transcript", role="assistant", final=True)[0]["text"]

        await say(processor, kiosk, voices["introduction"])
        collected = await kiosk.wait_for("visit.updated", count=2, within=TURN_TIMEOUT)
        assert collected["visitor_name"] == "山田" and collected["company_name"] == "株式会社テスト", kiosk.messages
        await kiosk.wait_for("response.done", count=2, within=TURN_TIMEOUT)
        asked = kiosk.of_type("transcript", role="assistant", final=True)[-1]["text"]
        assert "ご用件" in asked and "お名前" not in asked

        await say(processor, kiosk, voices["appointment"])
        confirming = await kiosk.wait_for("visit.updated", status="confirming", within=TURN_TIMEOUT)
        assert "鈴木" in confirming["host_name"] or "すずき" in confirming["host_name"], kiosk.messages
        await kiosk.wait_for("response.done", count=3, within=TURN_TIMEOUT)
        assert "確認いたします" in kiosk.of_type("transcript", role="assistant", final=True)[-1]["text"]

        await say(processor, kiosk, voices["yes"])
        await kiosk.wait_for("visit.updated", status="host_notified", within=TURN_TIMEOUT)
        await kiosk.wait_for("response.done", count=4, within=TURN_TIMEOUT)
        reply = kiosk.of_type("transcript", role="assistant", final=True)[-1]["text"]
        assert "お待ちしておりました" in reply, reply
    finally:
        await processor.close()

    visitor_lines = [m["text"] for m in kiosk.of_type("transcript", role="visitor")]
    # Heard as said, if not always as written: with ヤマト運輸 in the prompt Whisper may write 山田 「ヤマだ」; the
    # visit above holds 山田, reconciled by its reading.
    assert "やまだ" in reading_of(visitor_lines[0]), visitor_lines
    assert failures == []
    assert kiosk.of_type("response.done", status="completed") == kiosk.of_type("response.done")
    assert len(kiosk.audio) > 24_000 * 2 * 4  # the greeting and three replies were spoken
    visit = await Visit.objects.aget(session_id="voice-reception")
    assert visit.status == Visit.Status.HOST_NOTIFIED and visit.appointment_found
    notification = await HostNotification.objects.select_related("recipient").aget(visit=visit)
    assert notification.status == HostNotification.Status.SENT
    assert notification.recipient.name == "鈴木 花子"


async def test_a_visitor_who_pauses_at_the_comma_is_received_by_voice_in_realtime_mode(realtime_emulator, voices):
    """The VAD ends the turn at the pause; the second half is heard while the first is being answered. The answer
    is redone with both halves: name, company and host are kept and the name is not asked for again."""
    kiosk = FakeKiosk()
    failures: list[tuple[str, Exception | None]] = []
    processor = voice_processor(realtime_emulator, kiosk, failures, silence_ms=400)
    try:
        await processor.open(None)
        await kiosk.wait_for("response.done", within=TURN_TIMEOUT)
        await say(processor, kiosk, voices["name"], voices["host"])
        confirming = await kiosk.wait_for("visit.updated", status="confirming", within=TURN_TIMEOUT)
        await kiosk.wait_for("transcript", role="assistant", final=True, count=2, within=TURN_TIMEOUT)
        await say(processor, kiosk, voices["yes"])
        await kiosk.wait_for("visit.updated", status="host_notified", within=TURN_TIMEOUT)
    finally:
        await processor.close()
    heard = [m["text"] for m in kiosk.of_type("transcript", role="visitor")]
    assert "山田" in heard[0] and "鈴木" not in heard[0] and len(heard) >= 3, heard  # the pauses split the sentence
    assert confirming["visitor_name"] and "テスト" in confirming["company_name"], confirming
    replies = [m["text"] for m in kiosk.of_type("transcript", role="assistant", final=True)]
    assert all("お名前" not in text for text in replies[1:]), replies
    assert failures == []
    visit = await Visit.objects.select_related("host").aget(session_id="voice-reception")
    assert visit.status == Visit.Status.HOST_NOTIFIED and "山田" in visit.visitor_name
    assert visit.host is not None and visit.host.name == "鈴木 花子"
