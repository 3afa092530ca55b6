"""RealtimeAudioProcessor against the emulator: relay, transcripts, barge-in, session renewal and failure reports."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from realtime.bridge import text_to_say
from realtime.client import EMULATOR_API_KEY, RealtimeClient
from realtime.emulator import BrainContext, CallFunction, EmulatorServer, Reply, Say, ScriptedBrain
from realtime.emulator.audio import silence, tone
from realtime.errors import RealtimeConnectionError, RealtimeHandshakeError
from realtime.kiosk import ProtocolError
from realtime.processor import RealtimeAudioProcessor
from reception import workflow
from tests.support.realtime import TEST_KEY, TIMEOUT, FakeKiosk
from tests.support.waiting import stays, until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
    pytest.mark.timeout(60),
]

FRAME = 960  # 20 ms of PCM16 24 kHz
GREETING = "いらっしゃいませ"
LONG_REPLY = "承知いたしました。担当の者にお伝えしますので、あちらのソファにお掛けになって少々お待ちください。"


class KioskBrain(ScriptedBrain):
    """ScriptedBrain that also speaks "say exactly" responses (the greeting), as the real model would; the greeting
    is a short tone, so that tests need not wait long for the kiosk to have played it."""

    async def respond(self, context: BrainContext) -> Reply:
        spoken = text_to_say(context.instructions)
        return Say(spoken) if spoken else await super().respond(context)

    async def synthesize(self, text: str, language: str | None) -> bytes:
        return tone(300) if text.startswith(GREETING) else await super().synthesize(text, language)


class Harness:
    """Processors wired to one emulator, recording failures and usage."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.failures: list[tuple[str, Exception | None]] = []
        self.usage: list[dict[str, Any]] = []
        self.processors: list[RealtimeAudioProcessor] = []

    def client(self, **options: Any) -> RealtimeClient:
        return RealtimeClient(api_key=TEST_KEY, base_url=self.server.base_url, connect_timeout=2.0, **options)

    async def open(self, session_id: str = "rt-1", *, speak: bool = True, **options: Any) -> tuple[Any, FakeKiosk]:
        kiosk = FakeKiosk()
        processor = RealtimeAudioProcessor(
            session_id,
            "ja",
            kiosk,
            speak=speak,
            client_factory=self.client,
            on_failure=lambda reason, error: self.failures.append((reason, error)),
            on_response=lambda response, timing: self.usage.append(response["usage"]),
            **options,
        )
        self.processors.append(processor)
        await processor.open(None)
        return processor, kiosk

    async def opened(self, session_id: str = "rt-1", **options: Any) -> tuple[RealtimeAudioProcessor, FakeKiosk]:
        """Open and wait until the greeting has been spoken."""
        processor, kiosk = await self.open(session_id, **options)
        await kiosk.wait_for("response.done")
        await played_out(processor)
        return processor, kiosk

    async def failure(self, within: float = TIMEOUT) -> tuple[str, Exception | None]:
        """The one failure report; a second one within 0.3 s fails the test."""
        await until(lambda: self.failures, within=within, what="a failure report")
        await stays(lambda: len(self.failures) == 1, seconds=0.3, what=lambda: f"one failure report: {self.failures}")
        return self.failures[0]


@pytest.fixture
async def harness(realtime_emulator) -> AsyncIterator[Harness]:
    realtime_emulator.brain = KioskBrain()
    harness = Harness(realtime_emulator)
    yield harness
    for processor in harness.processors:
        await processor.close()
    # The emulator fixture then checks that no asyncio task at all is left.


def received(server: EmulatorServer, kind: str, session: int | None = None) -> list[dict[str, Any]]:
    events = server.received if session is None else server.sessions[session].received
    return [event for event in events if event["type"] == kind]


def appended_bytes(events: list[dict[str, Any]]) -> int:
    return sum(len(base64.b64decode(e["audio"])) for e in events if e["type"] == "input_audio_buffer.append")


async def feed(processor: RealtimeAudioProcessor, pcm: bytes, *, paced: bool = False) -> None:
    for start in range(0, len(pcm), FRAME):
        await processor.feed_audio(pcm[start : start + FRAME])
        await asyncio.sleep(0.02 if paced else 0)  # paced: in real time, as a microphone sends it


async def played_out(processor: RealtimeAudioProcessor) -> None:
    """Wait until the kiosk has played everything it was sent (it plays at 1x: the time is the behaviour)."""
    playback = processor.replies.playback
    if playback is not None:
        await asyncio.sleep(max(0.0, playback.ends_at() - time.monotonic()))


async def test_open_declares_the_tools_and_speaks_the_greeting(harness):
    processor, kiosk = await harness.opened()
    server = harness.server
    [update] = received(server, "session.update")
    assert [tool["name"] for tool in update["session"]["tools"]] == [tool["name"] for tool in workflow.TOOLS]
    assert "Where this visit stands" in update["session"]["instructions"]
    [create] = received(server, "response.create")
    greeting = text_to_say(create["response"]["instructions"])
    assert greeting and GREETING in greeting
    assert kiosk.messages[0]["type"] == "visit.updated" and kiosk.messages[0]["status"] == "collecting"
    assert kiosk.of_type("transcript", role="assistant", final=True)[0]["text"] == greeting
    assert kiosk.of_type("transcript", role="assistant", final=False)  # deltas, accumulated
    assert kiosk.of_type("response.done") == [{"type": "response.done", "status": "completed"}]
    assert len(kiosk.audio) > 0
    assert harness.usage and harness.usage[0]["total_tokens"] > 0
    assert processor.sessions_opened == 1 and harness.failures == []
    assert EMULATOR_API_KEY == TEST_KEY  # the default factory's key without OPENAI_API_KEY is the emulator's


async def test_audio_relay_both_ways_with_transcripts_and_server_vad(harness):
    harness.server.brain = KioskBrain(transcripts=["山田です"], steps=[Say("承知しました。")])
    processor, kiosk = await harness.opened()
    greeting_audio = len(kiosk.audio)
    speech = silence(200) + tone(600) + silence(800)
    await feed(processor, speech)

    heard = await kiosk.wait_for("transcript", role="visitor")
    assert heard == {"type": "transcript", "role": "visitor", "text": "山田です", "final": True}
    await kiosk.wait_for("response.done", count=2)
    await until(lambda: appended_bytes(harness.server.received) == len(speech), what="every frame appended")
    sent_audio = sum(
        len(base64.b64decode(e["delta"])) for e in harness.server.sent if e["type"] == "response.output_audio.delta"
    )
    assert len(kiosk.audio) == sent_audio > greeting_audio
    assert kiosk.of_type("transcript", role="assistant", final=True)[-1]["text"] == "承知しました。"
    assert (
        processor.clock.last_latency is not None and processor.clock.last_latency > 0
    )  # measured (its size: benchmarks)
    assert set(processor.unanswered_utterance) <= {0}  # the speech was answered; only trailing silence is left


async def test_text_input_is_a_user_message_and_a_response(harness):
    processor, kiosk = await harness.opened(speak=False)
    await processor.handle_text("株式会社テストの山田です")
    assert processor.unanswered_text == "株式会社テストの山田です"
    await kiosk.wait_for("response.done", count=2)
    user_items = [e["item"] for e in received(harness.server, "conversation.item.create")]
    assert user_items == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "株式会社テストの山田です"}]}
    ]
    assert len(received(harness.server, "response.create")) == 2
    assert kiosk.of_type("transcript", role="visitor")[0]["text"] == "株式会社テストの山田です"
    assert kiosk.audio == b""  # a typing kiosk gets no audio
    assert processor.unanswered_text is None


async def test_function_calls_update_the_visit_and_only_spoken_responses_end_a_kiosk_turn(harness):
    call = CallFunction("collect_visitor_info", {"company_name": "株式会社テスト", "visitor_name": "山田太郎"})
    harness.server.brain = KioskBrain(steps=[call, Say("ご用件をお聞かせください。")])
    processor, kiosk = await harness.opened()
    await processor.handle_text("株式会社テストの山田太郎です")
    await kiosk.wait_for("response.done", count=2)
    visit = kiosk.of_type("visit.updated")[-1]
    assert visit["visitor_name"] == "山田太郎" and visit["company_name"] == "株式会社テスト"
    # greeting and the reply, not the function-call response
    await stays(lambda: len(kiosk.of_type("response.done")) == 2, seconds=0.2, what="two response.done at the kiosk")
    assert len(received(harness.server, "response.create")) == 3


async def test_commit_without_turn_detection_commits_and_asks_for_a_response(harness):
    processor, kiosk = await harness.opened(turn_detection=None)
    with pytest.raises(ProtocolError):
        await processor.commit()
    await feed(processor, tone(300))
    await processor.commit()
    await kiosk.wait_for("response.done", count=2)
    kinds = [e["type"] for e in harness.server.received]
    assert kinds[kinds.index("input_audio_buffer.commit") + 1] == "response.create"


async def test_interrupt_cancels_then_truncates_at_what_the_kiosk_played(harness):
    harness.server.config.pace = 0.5  # the reply (~2.8 s of audio) is still being generated when cut
    harness.server.brain = KioskBrain(steps=[Say(LONG_REPLY)])
    processor, kiosk = await harness.opened()
    before = len(kiosk.audio)
    await processor.handle_text("お願いします")
    await kiosk.wait_for_audio(before + 1)
    first_chunk_at = time.monotonic()
    await asyncio.sleep(0.5)  # the kiosk plays half a second of the reply before the visitor cuts in
    await processor.interrupt()
    played_ms = (time.monotonic() - first_chunk_at) * 1000
    sent_ms = (len(kiosk.audio) - before) // 48

    assert kiosk.messages[-1] == {"type": "response.done", "status": "cancelled"}
    await until(lambda: harness.server.received[-1]["type"] == "conversation.item.truncate", what="the truncate")
    kinds = [e["type"] for e in harness.server.received]
    assert kinds[-2:] == ["response.cancel", "conversation.item.truncate"]
    truncate = harness.server.received[-1]
    assert truncate["audio_end_ms"] <= sent_ms
    assert abs(truncate["audio_end_ms"] - played_ms) < 150
    audio_at_cut = len(kiosk.audio)
    await until(lambda: not processor._client.response_active, what="the cut response ended upstream")
    await stays(lambda: len(kiosk.audio) == audio_at_cut, seconds=0.2, what="nothing more of the cut reply")
    assert len(kiosk.of_type("response.done", status="cancelled")) == 1
    assert received(harness.server, "conversation.item.truncate")  # accepted: no error came back
    assert not [e for e in harness.server.sent if e["type"] == "error"]


async def test_visitor_speech_during_the_reply_is_a_barge_in(harness):
    harness.server.config.pace = 0.5
    harness.server.brain = KioskBrain(steps=[Say(LONG_REPLY)])
    processor, kiosk = await harness.opened()
    before = len(kiosk.audio)
    await processor.handle_text("お願いします")
    await kiosk.wait_for_audio(before + 1)
    await asyncio.sleep(0.3)  # the kiosk plays 0.3 s of the reply before the visitor speaks
    await feed(processor, tone(300))
    await kiosk.wait_for("response.done", status="cancelled")
    [truncate] = received(harness.server, "conversation.item.truncate")
    assert 200 <= truncate["audio_end_ms"] <= (len(kiosk.audio) - before) // 48


async def test_session_renewal_is_invisible_to_the_kiosk(harness):
    server = harness.server
    call = CallFunction("collect_visitor_info", {"company_name": "株式会社テスト", "visitor_name": "山田"})
    server.brain = KioskBrain(steps=[call, Say("ご用件をお聞かせください。")])
    processor, kiosk = await harness.opened(renew_seconds=0.6)
    await processor.handle_text("株式会社テストの山田です")
    await kiosk.wait_for("response.done", count=2)
    seen = len(kiosk.messages)
    fed = silence(1500)
    await feed(processor, fed, paced=True)  # 1.5 s of kiosk audio across at least one swap
    await until(lambda: not processor._swapping, what="the session swap done")
    assert processor.sessions_opened == len(server.sessions) >= 3  # renewed during the greeting and the audio

    latest = server.sessions[-1]
    [update] = [e for e in latest.received if e["type"] == "session.update"]
    assert "株式会社テスト" in update["session"]["instructions"]  # the workflow state, not only the transcript
    seeded = [e["item"] for e in latest.received if e["type"] == "conversation.item.create"]
    assert seeded[0]["role"] == "assistant" and seeded[0]["content"][0]["text"].startswith(GREETING)
    assert seeded[-1]["content"][0]["text"] == "ご用件をお聞かせください。"
    assert seeded[1] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "株式会社テストの山田です"}],
    }
    await until(lambda: appended_bytes(server.received) == len(fed), what="all audio appended across swaps")
    assert kiosk.messages[seen:] == []  # no error, no mode change
    assert harness.failures == []
    await processor.handle_text("打ち合わせです")
    await kiosk.wait_for("response.done", count=3)
    assert server.sessions[-1].received[-1]["type"] in ("response.create", "input_audio_buffer.append")


async def test_session_expired_is_handled_by_renewal(harness):
    server = harness.server
    processor, kiosk = await harness.opened()
    (await server.wait_for_session(0)).expire()
    await server.wait_for_session(1)
    await until(lambda: not processor._swapping and processor.sessions_opened == 2, what="the second session live")
    await processor.handle_text("こんにちは")
    await kiosk.wait_for("response.done", count=2)
    assert received(server, "response.create", session=1)
    assert harness.failures == []
    assert not kiosk.of_type("error")


@pytest.mark.parametrize(
    ("faults", "error_type"),
    [
        ({"refuse_connections": True}, RealtimeConnectionError),
        ({"handshake_status": 401}, RealtimeHandshakeError),
        ({"handshake_status": 500}, RealtimeHandshakeError),
    ],
    ids=["refused", "401", "500"],
)
async def test_connection_failures_at_open_are_reported_once(harness, faults, error_type):
    harness.server.set_faults(**faults)
    processor, _ = await harness.open()
    reason, error = await harness.failure()
    assert reason == "connection_error" and isinstance(error, error_type)
    await processor.handle_text("こんにちは")  # no exception; kept for the Legacy path
    await processor.feed_audio(tone(100))
    assert processor.unanswered_text == "こんにちは" and processor.unanswered_utterance == tone(100)


@pytest.mark.parametrize("code", [1006, 1011])
async def test_unexpected_close_is_a_connection_error(harness, code):
    await harness.opened()
    harness.server.set_faults(close_code=code)
    reason, error = await harness.failure()
    assert reason == "connection_error" and error.close_code == code


async def test_stall_is_a_connection_error_and_the_utterance_is_kept(harness):
    processor, _ = await harness.opened(stall_seconds=0.4)
    harness.server.set_faults(stall=True)
    await feed(processor, tone(200))
    await processor.handle_text("山田です")
    reason, error = await harness.failure()
    assert reason == "connection_error" and error.reason == "stalled"
    assert processor.unanswered_text == "山田です" and processor.unanswered_utterance == tone(200)
    harness.server.set_faults(stall=False)


@pytest.mark.parametrize(
    "faults",
    [{"error_code": "server_error"}, {"error_code": "rate_limit_exceeded"}, {"fail_responses": "insufficient_quota"}],
    ids=["server_error", "rate_limit", "failed_response"],
)
async def test_upstream_errors_are_reported_once(harness, faults):
    processor, _ = await harness.opened()
    harness.server.set_faults(**faults)
    await processor.handle_text("山田です")
    reason, error = await harness.failure()
    assert reason == "upstream_error" and error is not None


async def test_benign_error_events_are_not_failures(harness):
    processor, _ = await harness.opened()
    harness.server.set_faults(error_code="response_cancel_not_active")
    await processor.interrupt()
    await stays(lambda: not harness.failures, seconds=0.3, what=lambda: f"no failure report: {harness.failures}")


async def test_slow_answers_are_reported_as_latency(harness):
    processor, _ = await harness.opened(latency_budget_seconds=0.3)
    harness.server.set_faults(latency_ms=700)
    await processor.handle_text("山田です")
    assert await harness.failure() == ("latency", None)


async def test_close_leaves_no_task_behind(harness):
    processor, _ = await harness.opened()
    await feed(processor, tone(200))
    await processor.close()
    assert [task for task in asyncio.all_tasks() if task.get_name().startswith("realtime-")] == []
    assert processor._tasks == set()


async def test_the_default_client_comes_from_the_settings(realtime_emulator, settings):
    realtime_emulator.brain = KioskBrain()
    settings.OPENAI_API_KEY = ""
    settings.REALTIME_API_URL = realtime_emulator.url
    kiosk = FakeKiosk()
    processor = RealtimeAudioProcessor("rt-settings", "ja", kiosk)
    await processor.open(None)
    await kiosk.wait_for("response.done")
    assert processor._client.base_url == realtime_emulator.base_url
    await processor.close()

    settings.REALTIME_API_URL = ""
    failures: list[str] = []
    processor = RealtimeAudioProcessor("rt-settings", "ja", FakeKiosk(), on_failure=lambda r, e: failures.append(r))
    await processor.open(None)
    assert failures == ["connection_error"]
    await processor.close()
