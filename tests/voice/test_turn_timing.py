"""Turn timings on both voice paths: the wait for the first audio split into the upstream's part and our server's.

Delays are injected on one side (a slow model, slow engines, a slow kiosk link, a slow function call) and must land
on that side of the split: these are lower bounds the injected delay guarantees, never speed limits.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async

from core.timing import TurnTiming
from fallback.emergency import apply_action
from metrics.collector import collector
from metrics.models import TurnMetric
from realtime.client import RealtimeClient
from realtime.emulator import BrainContext, CallFunction, Reply, Say, ScriptedBrain
from realtime.emulator.audio import silence, tone
from realtime.emulator.reception_brain import build_reception_brain
from realtime.processor import RealtimeAudioProcessor
from reception.workflow.chat import OpenAIChatUnderstanding
from speech.stt import Transcript
from speech.vad import UtteranceSegmenter
from tests.support.kiosk_client import collect_turn, connect
from tests.support.realtime import TEST_KEY, FakeKiosk, LoudVAD, assert_no_leaked_tasks
from tests.support.waiting import until
from voice import legacy
from voice.legacy import LegacyAudioService

pytestmark = [
    pytest.mark.usefixtures("reference_prices"),  # Realtime admission needs prices
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
    pytest.mark.timeout(60),
]

FRAME = 960  # 20 ms of PCM16 24 kHz
DELAY = 0.3  # seconds injected on one side of the split


def assert_split(timing: TurnTiming | None) -> TurnTiming:
    assert timing is not None
    assert timing.upstream_ms >= 0 and timing.server_ms >= 0
    assert timing.upstream_ms + timing.server_ms == pytest.approx(timing.ttfa_ms)
    return timing


# --- Realtime ------------------------------------------------------------------------------------------------


class SlowBrain(ScriptedBrain):
    """A model that thinks for `delay` seconds before each response after the greeting."""

    def __init__(self, steps: list[Reply] = (), *, delay: float = 0.0, **options: Any) -> None:
        super().__init__(steps, **options)
        self.delay = delay

    async def respond(self, context: BrainContext) -> Reply:
        if self.contexts:
            await asyncio.sleep(self.delay)  # the injected delay: a slow model
        return await super().respond(context)


class SlowKiosk(FakeKiosk):
    """A kiosk link that takes `delay` seconds to take the first audio chunk of each reply after the greeting."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.slow = False

    async def send_audio(self, pcm16: bytes) -> None:
        if self.slow:
            self.slow = False
            await asyncio.sleep(self.delay)  # the injected delay: a slow kiosk link
        await super().send_audio(pcm16)


@dataclass
class RealtimeRun:
    processor: RealtimeAudioProcessor
    kiosk: FakeKiosk
    timings: list[TurnTiming | None]


async def open_realtime(server, kiosk: FakeKiosk, **options: Any) -> RealtimeRun:
    timings: list[TurnTiming | None] = []
    processor = RealtimeAudioProcessor(
        "timing-rt",
        "ja",
        kiosk,
        speak=True,
        client_factory=lambda **o: RealtimeClient(api_key=TEST_KEY, base_url=server.base_url, **o),
        on_response=lambda response, timing: timings.append(timing),
        **options,
    )
    await processor.open(None)
    await kiosk.wait_for("response.done")
    return RealtimeRun(processor, kiosk, timings)


async def test_realtime_a_slow_model_is_upstream_and_a_slow_kiosk_link_is_ours(realtime_emulator):
    realtime_emulator.brain = SlowBrain(delay=DELAY)
    run = await open_realtime(realtime_emulator, SlowKiosk(DELAY))
    try:
        assert run.timings == [None]  # the greeting answered no visitor turn
        run.kiosk.slow = True
        await run.processor.handle_text("株式会社テストの山田です")
        await run.kiosk.wait_for("response.done", count=2)
        await until(lambda: len(run.timings) == 2, what="two turn timings")
    finally:
        await run.processor.close()
    timing = assert_split(run.timings[1])
    assert timing.upstream_ms >= DELAY * 1000  # the model's thinking
    assert timing.server_ms >= DELAY * 1000  # the kiosk link's
    assert run.processor.clock.last_latency * 1000 == pytest.approx(timing.ttfa_ms)


async def test_realtime_spoken_turn_starts_at_speech_stopped_and_is_split(realtime_emulator):
    realtime_emulator.brain = SlowBrain(transcripts=["山田です"], delay=DELAY)
    run = await open_realtime(realtime_emulator, FakeKiosk())
    try:
        speech = silence(200) + tone(600) + silence(800)
        for start in range(0, len(speech), FRAME):
            await run.processor.feed_audio(speech[start : start + FRAME])
        await run.kiosk.wait_for("response.done", count=2)
        await until(lambda: len(run.timings) == 2, what="two turn timings")
    finally:
        await run.processor.close()
    timing = assert_split(run.timings[1])
    assert timing.upstream_ms >= DELAY * 1000


async def test_realtime_our_function_call_is_ours_not_the_upstreams(realtime_emulator, monkeypatch):
    call = CallFunction("collect_visitor_info", {"company_name": "株式会社テスト", "visitor_name": "山田太郎"})
    realtime_emulator.brain = ScriptedBrain([Say("いらっしゃいませ。"), call, Say("ご用件をお聞かせください。")])
    run = await open_realtime(realtime_emulator, FakeKiosk())
    handle_call = run.processor.bridge.handle_call

    async def slow_call(*args: Any) -> Any:
        await asyncio.sleep(DELAY)  # the workflow's database is slow today
        return await handle_call(*args)

    monkeypatch.setattr(run.processor.bridge, "handle_call", slow_call)
    try:
        await run.processor.handle_text("株式会社テストの山田太郎です")
        await run.kiosk.wait_for("response.done", count=2)
        await until(lambda: len(run.timings) == 3, what="three turn timings")
    finally:
        await run.processor.close()
    assert run.timings[1] is None  # the function-call response had no audio
    timing = assert_split(run.timings[2])
    assert timing.server_ms >= DELAY * 1000


# --- Legacy --------------------------------------------------------------------------------------------------


class SlowEngines:
    """Speech engines that take known times: recognition `DELAY`, the first sentence's synthesis `DELAY`, every
    later sentence 2 s (after the first audio: never part of the wait). Fixed phrases are not cached here."""

    kind = "local"

    def __init__(self) -> None:
        self.stt = self
        self.tts = self
        self.phrases = self
        self.sentences = 0

    def new_segmenter(self, **kwargs: Any) -> UtteranceSegmenter:
        return UtteranceSegmenter(LoudVAD(), **kwargs)

    def transcribe(self, pcm16_16k: bytes, language: str, hint: str) -> Transcript:
        time.sleep(DELAY)  # the injected delay: slow speech recognition
        return Transcript("株式会社テストの山田太郎です。", language, 0.5, DELAY)

    def tts_for(self, voices: Any) -> SlowEngines:
        return self  # one voice

    def synthesize(self, sentence: str, language: str, tts: Any = None) -> bytes:
        self.sentences += 1
        time.sleep(DELAY if self.sentences == 1 else 2.0)  # injected: slow synthesis, slower after the first
        return bytes(4800)


def slow_chat_model() -> OpenAIChatUnderstanding:
    """The chat-model understanding over a fake endpoint that answers after `DELAY`."""

    def answer(request: httpx.Request) -> httpx.Response:
        time.sleep(DELAY)  # the injected delay: a slow chat model
        content = {"visitor_name": "山田太郎", "company_name": "株式会社テスト"}
        return httpx.Response(200, json={"choices": [{"message": {"content": json.dumps(content)}}]})

    return OpenAIChatUnderstanding(client=httpx.Client(transport=httpx.MockTransport(answer)))


async def test_legacy_engines_and_chat_model_are_upstream_and_our_lookups_are_ours(monkeypatch):
    chat = slow_chat_model()
    monkeypatch.setattr("reception.workflow.graph.get_understanding", lambda: chat)
    real_hint = legacy.recognition_hint

    def slow_hint(language: str) -> str:
        time.sleep(DELAY)  # our database lookup is slow today
        return real_hint(language)

    monkeypatch.setattr("voice.legacy.recognition_hint", slow_hint)
    engines, kiosk, turns = SlowEngines(), FakeKiosk(), []
    monkeypatch.setattr("voice.legacy.legacy_engines", lambda: engines)
    service = LegacyAudioService("timing-legacy", "ja", kiosk, on_turn=lambda **turn: turns.append(turn))
    await service.open(None)  # typed so far: the greeting is not spoken
    try:
        await service.answer_recording(tone(500))
        await until(lambda: turns, within=30, what="a recorded turn")
    finally:
        await service.close()
    assert engines.sentences >= 2, "the reply must have two sentences for this test to mean anything"
    timing = assert_split(TurnTiming(turns[0]["ttfa_ms"], turns[0]["upstream_ms"], turns[0]["server_ms"]))
    assert timing.upstream_ms >= 3 * DELAY * 1000  # recognition + chat model + the first sentence
    assert timing.upstream_ms < 3 * DELAY * 1000 + 2000  # not the sentences synthesized after the first audio
    assert timing.server_ms >= DELAY * 1000  # our own lookup


async def test_legacy_typed_turn_without_audio_is_split_too(monkeypatch):
    turns: list[dict[str, Any]] = []
    monkeypatch.setattr("voice.legacy.legacy_engines", SlowEngines)
    service = LegacyAudioService("timing-typed", "ja", FakeKiosk(), on_turn=lambda **turn: turns.append(turn))
    await service.open(None)
    try:
        await service.handle_text("株式会社テストの山田太郎です。")
        await until(lambda: turns, what="a recorded turn")
    finally:
        await service.close()
    timing = assert_split(TurnTiming(turns[0]["ttfa_ms"], turns[0]["upstream_ms"], turns[0]["server_ms"]))
    assert timing.upstream_ms == 0  # the rules understood it: no engine was asked


# --- end to end, through the kiosk socket --------------------------------------------------------------------


def synthetic_voice(text: str, language: str | None) -> bytes:
    return tone(max(200, 60 * len(text)))


async def act(action: str, **params: Any) -> None:
    await database_sync_to_async(apply_action)(action, actor="test", reason="timing test", **params)


async def typed_turn(key: str, session_id: str) -> str:
    """A voice kiosk's session with one typed turn; returns the path it took."""
    ws = await connect(key)
    await ws.send_json_to({"type": "session.start", "session_id": session_id, "language": "ja", "voice": True})
    messages, _ = await collect_turn(ws, 60)
    await ws.send_json_to({"type": "input_text", "text": "株式会社テストの山田太郎です。"})
    _, audio = await collect_turn(ws, 60)
    assert audio
    await ws.send_json_to({"type": "session.end"})
    await ws.receive_json_from(timeout=10)
    await ws.disconnect()
    return messages[0]["mode"]


@pytest.mark.speech
async def test_every_answered_turn_of_both_paths_has_its_split_recorded(realtime_emulator, kiosk_and_key, settings):
    realtime_emulator.config.accepted_keys = None
    realtime_emulator.brain = build_reception_brain(transcribe=lambda pcm, language: "", synthesize=synthetic_voice)
    settings.REALTIME_API_URL = realtime_emulator.url
    _, key = kiosk_and_key
    assert await typed_turn(key, "timing-legacy-e2e") == "legacy"
    await act("enable")
    await act("set_rollout_percentage", percent=100)
    assert await typed_turn(key, "timing-realtime-e2e") == "realtime"
    await database_sync_to_async(collector.flush)()
    for session_id, path in (("timing-legacy-e2e", "legacy"), ("timing-realtime-e2e", "realtime")):
        rows = [row async for row in TurnMetric.objects.filter(session_id=session_id)]
        timed = [row for row in rows if row.ttfa_ms is not None]
        assert timed and all(row.path == path for row in rows), rows
        for row in timed:
            assert_split(TurnTiming(row.ttfa_ms, row.upstream_ms, row.server_ms))
        # A response that answered no visitor turn with audio (a greeting, a function call) has no timing at all.
        assert all(row.upstream_ms is None and row.server_ms is None for row in rows if row.ttfa_ms is None)
    await assert_no_leaked_tasks()
