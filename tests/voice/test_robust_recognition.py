"""Recognition on the Legacy path: only speech is transcribed, only confident words are acted on, recognition
overlaps the end-of-speech silence, and fixed phrases are synthesised once.

The first tests use scripted engines (a VAD that hears any tone, scripted transcripts); those marked `speech`
run the real Silero VAD and Whisper on a tone, a door chime and a cough-like burst.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.conf import settings

from realtime.emulator.audio import silence, tone
from reception.workflow.names import recognition_hint
from reception.workflow.prompts import field_list, say
from reception.workflow.rules import RuleBasedUnderstanding
from reception.workflow.understanding import EXPECT_CONFIRMATION
from speech.audio import KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE, resample_pcm16
from speech.engines import legacy_engines
from speech.stt import Transcript, echoes_prompt
from speech.synthesis_cache import SynthesisCache
from speech.vad import SpeechPaused, Utterance, UtteranceSegmenter, utterances_in
from tests.support.corpus import Line
from tests.support.realtime import FakeKiosk, LoudVAD
from tests.support.spoken import Microphone, close_voices, spoken
from voice.hybrid import HybridVoiceManager
from voice.legacy import LegacyAudioService

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
    pytest.mark.timeout(120),
]

FRAME = 960  # 20 ms of PCM16 at 24 kHz
WAIT = 30.0  # seconds for a turn on a loaded machine
NAME_TURN = "株式会社テストの山田太郎です。"
HOST_TURN = "鈴木さんと10時にお約束があります。"
HEARD_NAME = Transcript(NAME_TURN, "ja", 1.0, 0.1, no_speech_prob=0.05, avg_logprob=-0.2)
# What Whisper base made of a 1 s 220 Hz tone (measured): a word, but probably no speech.
TONE_AS_DELIVERY = Transcript("お届け物。", "ja", 1.0, 0.1, no_speech_prob=0.69, avg_logprob=-0.79)


class ScriptedEngines:
    """Speech engines whose recognition returns the scripted transcripts in turn; records what it was given."""

    kind = "local"

    def __init__(self, *transcripts: Transcript) -> None:
        self.stt = self.tts = self
        self.phrases = SynthesisCache(self)
        self.transcripts = list(transcripts)
        self.heard: list[bytes] = []
        self.spoken: list[str] = []

    def new_segmenter(self, **kwargs: Any) -> UtteranceSegmenter:
        return UtteranceSegmenter(LoudVAD(), **kwargs)

    def tts_for(self, voices: Any) -> ScriptedEngines:
        return self  # one voice

    def transcribe(self, pcm16_16k: bytes, language: str, hint: str | None = None) -> Transcript:
        self.heard.append(pcm16_16k)
        return self.transcripts.pop(0)

    def synthesize(self, sentence: str, language: str) -> bytes:
        self.spoken.append(sentence)
        return bytes(480)


async def until(condition, within: float = WAIT) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - plain lists filled by worker threads
            await asyncio.sleep(0.01)


async def settled(service: LegacyAudioService) -> None:
    """Until every turn the service started has answered or given up, and nothing plays."""
    await until(lambda: not service._tasks and (service._playback is None or service._playback.done()))


async def session(monkeypatch, engines, session_id: str, *, named: bool = True, speak: bool = False):
    """A Legacy session on `engines`, greeted and (if `named`) told the visitor's name by typing."""
    monkeypatch.setattr("voice.legacy.legacy_engines", lambda: engines)
    kiosk = FakeKiosk()
    service = LegacyAudioService(session_id, "ja", kiosk, speak=speak)
    await service.open(None)
    if named:
        await service.handle_text(NAME_TURN)
        await kiosk.wait_for("response.done", count=2, within=WAIT)
    return service, kiosk


async def feed(service: LegacyAudioService, pcm16: bytes) -> None:
    for offset in range(0, len(pcm16), FRAME):
        await service.feed_audio(pcm16[offset : offset + FRAME])


# --- the segmenter's pause ------------------------------------------------------------------------------------


def test_a_pause_reports_the_utterance_that_the_end_of_speech_then_confirms():
    segmenter = UtteranceSegmenter(LoudVAD(), silence_ms=600, pause_ms=200)
    events = segmenter.feed(silence(300) + tone(800) + silence(700))
    pauses = [e for e in events if isinstance(e, SpeechPaused)]
    ends = [e for e in events if isinstance(e, Utterance)]
    assert len(pauses) == 1 and len(ends) == 1
    assert events.index(pauses[0]) < events.index(ends[0])
    assert pauses[0].same_speech(ends[0])


def test_speech_after_the_pause_makes_the_early_utterance_stale():
    segmenter = UtteranceSegmenter(LoudVAD(), silence_ms=600, pause_ms=200)
    events = segmenter.feed(tone(800) + silence(300) + tone(500) + silence(700))
    pauses = [e for e in events if isinstance(e, SpeechPaused)]
    (end,) = [e for e in events if isinstance(e, Utterance)]
    assert len(pauses) == 2
    assert not pauses[0].same_speech(end) and pauses[1].same_speech(end)


# --- the VAD before every recording, the confidence gate ------------------------------------------------------


async def test_a_replayed_recording_without_speech_is_not_transcribed(monkeypatch):
    engines = ScriptedEngines(TONE_AS_DELIVERY)
    service, kiosk = await session(monkeypatch, engines, "replay-silence")
    try:
        assert await service.answer_recording(silence(1500)) is False
        await settled(service)
    finally:
        await service.close()
    assert engines.heard == []
    assert len(kiosk.of_type("response.done")) == 2  # the greeting and the typed name, nothing since


@pytest.mark.parametrize(
    "heard", [TONE_AS_DELIVERY, Transcript("", "ja", 1.0, 0.1, 0.2, -0.5)], ids=["unsure", "empty"]
)
async def test_unclear_words_ask_again_once_and_leave_the_visit(monkeypatch, heard):
    engines = ScriptedEngines(heard, heard)
    service, kiosk = await session(monkeypatch, engines, f"unclear-{heard.text or 'empty'}")
    before = kiosk.of_type("visit.updated")[-1]
    try:
        assert await service.answer_recording(tone(1000))
        await kiosk.wait_for("response.done", count=3, within=WAIT)
        assert await service.answer_recording(tone(1000))  # unclear again: not asked a third time
        await until(lambda: len(engines.heard) == 2)
        await settled(service)
    finally:
        await service.close()
    assert not kiosk.of_type("transcript", role="visitor", text=heard.text)
    reask = kiosk.of_type("transcript", role="assistant")[-1]["text"]
    assert reask == say("ask_unclear", "ja", fields=field_list(["purpose", "host_name"], "ja"))
    assert kiosk.of_type("visit.updated")[-1] == before
    assert before["visitor_type"] != "delivery"
    assert len(kiosk.of_type("response.done")) == 3


async def test_confident_words_after_a_reask_are_answered(monkeypatch):
    engines = ScriptedEngines(TONE_AS_DELIVERY, HEARD_NAME)
    service, kiosk = await session(monkeypatch, engines, "reask-then-name", named=False)
    try:
        await service.answer_recording(tone(1000))
        await kiosk.wait_for("response.done", count=2, within=WAIT)
        await service.answer_recording(tone(1000))
        await kiosk.wait_for("response.done", count=3, within=WAIT)
    finally:
        await service.close()
    assert kiosk.of_type("transcript", role="visitor")[-1]["text"] == NAME_TURN
    assert kiosk.of_type("visit.updated")[-1]["visitor_name"].replace(" ", "") == "山田太郎"


# --- recognition overlapping the end-of-speech silence -------------------------------------------------------


async def test_recognition_starts_at_the_pause_and_its_result_is_kept(monkeypatch, settings):
    settings.LEGACY_END_OF_SPEECH_SILENCE_MS = 600
    engines = ScriptedEngines(HEARD_NAME)
    service, kiosk = await session(monkeypatch, engines, "early-kept", named=False)
    try:
        await feed(service, silence(200) + tone(1000) + silence(300))
        await until(lambda: len(engines.heard) == 1)  # started while the end-of-speech silence still runs
        assert not kiosk.of_type("transcript", role="visitor")
        await feed(service, silence(600))
        await kiosk.wait_for("transcript", role="visitor", within=WAIT)
        await kiosk.wait_for("response.done", count=2, within=WAIT)
    finally:
        await service.close()
    assert len(engines.heard) == 1
    assert kiosk.of_type("visit.updated")[-1]["visitor_name"].replace(" ", "") == "山田太郎"


async def test_speech_after_the_pause_discards_the_early_recognition(monkeypatch):
    early = Transcript("株式会社テスト", "ja", 1.0, 0.1, 0.05, -0.2)
    engines = ScriptedEngines(early, HEARD_NAME)
    service, kiosk = await session(monkeypatch, engines, "early-discarded", named=False)
    try:
        await feed(service, tone(1000) + silence(300))
        await until(lambda: len(engines.heard) == 1)
        await feed(service, tone(800) + silence(800))
        await kiosk.wait_for("response.done", count=2, within=WAIT)
        await settled(service)
    finally:
        await service.close()
    assert len(engines.heard) == 2 and len(engines.heard[1]) > len(engines.heard[0])
    assert [m["text"] for m in kiosk.of_type("transcript", role="visitor")] == [NAME_TURN]


class HeldEngines(ScriptedEngines):
    """Recognition that does not finish until the test lets it."""

    def __init__(self, *transcripts: Transcript) -> None:
        super().__init__(*transcripts)
        self.release = threading.Event()

    def transcribe(self, pcm16_16k: bytes, language: str, hint: str | None = None) -> Transcript:
        self.heard.append(pcm16_16k)
        self.release.wait(WAIT)
        return self.transcripts.pop(0)


async def test_one_early_recognition_at_a_time(monkeypatch):
    early = Transcript("株式会社テスト", "ja", 1.0, 0.1, 0.05, -0.2)
    engines = HeldEngines(early, HEARD_NAME)
    service, kiosk = await session(monkeypatch, engines, "early-one-at-a-time", named=False)
    try:
        await feed(service, tone(800) + silence(300))
        await until(lambda: len(engines.heard) == 1)
        await feed(service, tone(800) + silence(300))  # a second pause while the first guess still decodes
        assert len(service._tasks) == 1 and len(engines.heard) == 1  # no second recognition was started
        engines.release.set()
        await feed(service, silence(600))
        await kiosk.wait_for("response.done", count=2, within=WAIT)
    finally:
        engines.release.set()
        await service.close()
    assert len(engines.heard) == 2  # the stale guess and the whole utterance, nothing more
    assert [m["text"] for m in kiosk.of_type("transcript", role="visitor")] == [NAME_TURN]


# --- fixed phrases synthesised once -----------------------------------------------------------------------------


async def test_the_greeting_is_synthesised_once_for_every_session(monkeypatch):
    engines = ScriptedEngines()
    greeting = say("greeting", "ja")
    for number in range(3):
        service, _ = await session(monkeypatch, engines, f"greeted-{number}", named=False, speak=True)
        await service.close()
    assert 1 < len(engines.spoken) == len(set(engines.spoken))  # each greeting sentence once
    assert "".join(engines.spoken) == greeting


def test_the_cache_keeps_the_most_recently_used_phrases_per_voice():
    class Voice:
        def __init__(self, voice: str) -> None:
            self.voice, self.calls = voice, 0

        def synthesize(self, text: str, language: str) -> bytes:
            self.calls += 1
            return text.encode()

    marin = Voice("marin")
    cache = SynthesisCache(marin, size=2)
    for text in ("はい。", "いいえ。", "はい。", "ようこそ。", "はい。", "いいえ。"):
        cache.synthesize(text, "ja")
    assert marin.calls == 4  # いいえ was evicted by ようこそ; はい stayed in use
    alloy = Voice("alloy")
    cache.tts = alloy
    cache.synthesize("はい。", "ja")
    assert alloy.calls == 1  # another voice says it anew


# --- the real VAD and Whisper on non-speech --------------------------------------------------------------------


def door_chime() -> bytes:
    """Two decaying bell tones, 880 Hz then 660 Hz (PCM16 24 kHz)."""
    t = np.arange(int(1.5 * KIOSK_SAMPLE_RATE)) / KIOSK_SAMPLE_RATE
    ding = 0.3 * np.sin(2 * np.pi * 880 * t) * np.exp(-3 * t)
    dong = 0.3 * np.sin(2 * np.pi * 660 * t) * np.exp(-3 * np.maximum(t - 0.5, 0)) * (t > 0.5)
    return (np.clip(ding + dong, -1, 1) * 32767).astype("<i2").tobytes()


def cough() -> bytes:
    """A 0.4 s burst of noise that dies away like a cough (PCM16 24 kHz)."""
    n = int(0.4 * KIOSK_SAMPLE_RATE)
    burst = np.random.default_rng(0).standard_normal(n) * np.exp(-np.arange(n) / 2400) * 0.5
    return (np.clip(burst, -1, 1) * 32767).astype("<i2").tobytes()


NOISES = {"tone_220hz": lambda: tone(1000, 220.0), "door_chime": door_chime, "cough": cough}


@pytest.mark.speech
@pytest.mark.parametrize("noise", NOISES)
def test_non_speech_never_reaches_recognition(noise):
    segmenter = legacy_engines().new_segmenter(silence_ms=settings.LEGACY_END_OF_SPEECH_SILENCE_MS)
    assert utterances_in(segmenter, silence(300) + NOISES[noise]() + silence(800)) == []


def at_16k(pcm16: bytes) -> bytes:
    return resample_pcm16(pcm16, KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE)


@pytest.mark.speech
def test_whisper_words_for_a_tone_are_not_acted_on_and_speech_is():
    engines = legacy_engines()
    thresholds = (settings.LEGACY_NO_SPEECH_THRESHOLD, settings.LEGACY_LOGPROB_THRESHOLD)
    heard_tone = engines.stt.transcribe(at_16k(tone(1000, 220.0)), "ja")
    assert not heard_tone.confident(*thresholds), heard_tone
    spoken = at_16k(engines.tts.synthesize(NAME_TURN, "ja"))
    heard_speech = engines.stt.transcribe(spoken, "ja")
    assert heard_speech.confident(*thresholds) and "山田" in heard_speech.text, heard_speech


@pytest.mark.speech
@pytest.mark.parametrize("noise", NOISES)
async def test_noise_replayed_after_a_fallback_never_changes_the_visit(monkeypatch, noise):
    engines = legacy_engines()
    legacy, kiosk = await session(monkeypatch, engines, f"fallback-{noise}")
    manager = HybridVoiceManager(legacy.session_id, "ja", kiosk)
    left = SimpleNamespace(
        unanswered_text="", reply_owed=False, unanswered_utterance=NOISES[noise](), sessions_opened=True
    )
    try:
        await manager._answer_what_was_left(left, legacy)
        await legacy.handle_text(HOST_TURN)  # answered after anything the noise could have started
        await kiosk.wait_for("response.done", count=3, within=90)
        await settled(legacy)
    finally:
        await legacy.close()
    assert [m["text"] for m in kiosk.of_type("transcript", role="visitor")] == [NAME_TURN, HOST_TURN]
    visit = kiosk.of_type("visit.updated")[-1]
    assert visit["visitor_type"] != "delivery" and visit["status"] == "confirming", visit
    assert len(kiosk.of_type("response.done")) == 3


@pytest.mark.speech
async def test_speech_replayed_after_a_fallback_is_answered(monkeypatch):
    engines = legacy_engines()
    legacy, kiosk = await session(monkeypatch, engines, "fallback-speech", named=False)
    spoken = engines.tts.synthesize(NAME_TURN + HOST_TURN, "ja")
    left = SimpleNamespace(
        unanswered_text="", reply_owed=False, unanswered_utterance=silence(400) + spoken, sessions_opened=True
    )
    try:
        await HybridVoiceManager(legacy.session_id, "ja", kiosk)._answer_what_was_left(left, legacy)
        await kiosk.wait_for("response.done", count=2, within=90)
    finally:
        await legacy.close()
    visit = kiosk.of_type("visit.updated")[-1]
    assert visit["visitor_name"].replace(" ", "") == "山田太郎" and "鈴木" in visit["host_name"], visit


# --- the recognition prompt carried on over a short answer -------------------------------------------------------

STAFF_HINT = "受付です。佐藤健、鈴木花子、田中一郎、田中美咲。お約束、お届け物。"


@pytest.mark.parametrize(
    ("text", "echo"),
    [
        ("佐藤健、", True),  # what Whisper made of a short はい in lobby noise, with the staff as its prompt
        ("佐藤健、鈴木花子、", True),
        ("佐藤健です。", False),
        ("佐藤健。", False),  # a bare answer, not the prompt's list
        ("はい。", False),
    ],
)
def test_words_that_carry_on_the_prompts_list_are_an_echo(text, echo):
    assert echoes_prompt(text, STAFF_HINT) is echo


@pytest.mark.speech
def test_a_short_answer_in_lobby_noise_is_heard_and_not_the_prompt():
    line = Line("はい。", 0.85, "high")
    microphone, speech = Microphone(), spoken(line, "ja")
    microphone.hear(line, speech)
    noisy = at_16k(b"".join(microphone.frames(speech)))
    heard = legacy_engines().stt.transcribe(noisy, "ja", STAFF_HINT)
    assert heard.text.startswith("はい") and not echoes_prompt(heard.text, STAFF_HINT), heard
    close_voices()


def _heard_with_the_directorys_prompt(line: Line) -> Transcript:
    """The line in its room noise, as the Legacy Whisper hears it with the demo directory's recognition prompt."""
    microphone, speech = Microphone(), spoken(line, "ja")
    microphone.hear(line, speech)
    heard = legacy_engines().stt.transcribe(at_16k(b"".join(microphone.frames(speech))), "ja", recognition_hint("ja"))
    close_voices()
    return heard


NO_LINES = [Line("いいえ、佐藤さんではなく鈴木さんです。", 1.0, "high"), Line("いいえ。", 1.2, "low")]


@pytest.mark.speech
@pytest.mark.parametrize("line", NO_LINES)
def test_a_no_in_lobby_noise_is_heard_as_no_with_the_directorys_prompt(line):
    """With a prompt that ended on 「お約束、お届け物」, Whisper heard these いいえ as 「いいね」."""
    heard = _heard_with_the_directorys_prompt(line)
    assert RuleBasedUnderstanding().understand(heard.text, "ja", EXPECT_CONFIRMATION).answer is False, heard


@pytest.mark.speech
@pytest.mark.parametrize("seconds", [7, 13, 24])
def test_a_quick_yes_after_seconds_of_the_lobby_is_an_utterance(seconds):
    """At these three positions in the noise, the VAD's drifted state and a 150 ms minimum dropped it."""
    segmenter = legacy_engines().new_segmenter(silence_ms=settings.LEGACY_END_OF_SPEECH_SILENCE_MS)
    line = Line("はい。", 1.2, "low")
    microphone, speech = Microphone(), spoken(line, "ja")
    microphone.hear(line, speech)
    assert not segmenter.feed(b"".join(microphone.frames(silence(seconds * 1000))))
    events = segmenter.feed(b"".join(microphone.frames(silence(300) + speech + silence(2000))))
    assert sum(isinstance(event, Utterance) for event in events) == 1
    close_voices()


@pytest.mark.speech
def test_a_quick_yes_over_light_noise_after_a_sentence_is_an_utterance():
    """A fast 「はい」 has ~200 ms of voice; after a sentence, the VAD's state must not make it less than speech."""
    segmenter = legacy_engines().new_segmenter(silence_ms=settings.LEGACY_END_OF_SPEECH_SILENCE_MS)
    microphone, heard = Microphone(), []
    sentence = "サンプル商事の高橋誠です。佐藤さんと十六時にお約束があります。"
    for line in (Line(sentence, 1.2, "low"), Line("はい。", 1.2, "low")):
        speech = spoken(line, "ja")
        microphone.hear(line, speech)
        events = segmenter.feed(b"".join(microphone.frames(silence(300) + speech + silence(2000))))  # one stream
        heard.append(sum(isinstance(event, Utterance) for event in events))
    assert heard == [1, 1]
    close_voices()


CARRIER_LINES = [
    Line("佐川急便です。お荷物のお届けで、受領印をお願いします。", 1.2, "low"),
    Line("ヤマト運輸です。お届け物をお持ちしました。"),
]


@pytest.mark.speech
@pytest.mark.parametrize("line", CARRIER_LINES)
def test_a_carrier_is_heard_as_the_carrier_with_the_directorys_prompt(line):
    """Before the carriers joined the prompt, Whisper heard 「佐藤は9人です」 (a host's name) and 「山東入」."""
    heard = _heard_with_the_directorys_prompt(line)
    assert heard.text.startswith(line.text[:4]), heard
