"""A short run of the spoken corpus on both paths, with the real local engines: the issue's Japanese visitor who
pauses inside the sentence, and an English delivery (signature needed) spoken fast over light noise.
Each visit must be stored with the expected fields. The whole corpus is `benchmarks/conversations.py`; the corpus
typed (no speech) must already give every expected visit.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from realtime.emulator.audio import tone
from realtime.emulator.reception_brain import build_reception_brain
from reception import workflow
from reception.models import Visit
from reception.workflow.prompts import say
from tests.support.corpus import CORPUS, Line, conversation, differences
from tests.support.realtime import assert_no_leaked_tasks
from tests.support.spoken import close_voices
from tests.support.spoken_visits import Visitor, route_to, set_presence, speak_conversation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory", "reference_prices"),
    pytest.mark.timeout(180),
]

SHORT_RUN = ("ja-yamada-pause", "en-delivery-signature-fast-low-noise")


@pytest.fixture(scope="module", autouse=True)
def visitor_voices():
    """The visitors' voices (a Piper worker per English speed) stop with the module."""
    yield
    close_voices()


@pytest.fixture
def kiosk_key(kiosk_and_key, realtime_emulator, settings) -> str:
    """A kiosk key; Realtime sessions go to the bundled emulator with its reception brain on the local engines
    (Silero, Whisper, the rules), speaking in short tones so that the visitor need not wait for long replies."""
    realtime_emulator.config.accepted_keys = None
    realtime_emulator.brain = build_reception_brain(synthesize=lambda text, language: tone(300))
    settings.REALTIME_API_URL = realtime_emulator.url
    settings.REALTIME_FIRST_AUDIO_DEADLINE_SECONDS = 60.0  # what is heard is tested here, not how fast on a busy CPU
    settings.REALTIME_STALL_SECONDS = 60.0
    return kiosk_and_key[1]


@pytest.mark.speech
@pytest.mark.parametrize("path", ["legacy", "realtime"])
@pytest.mark.parametrize("conversation_id", SHORT_RUN)
async def test_a_spoken_conversation_leaves_the_expected_visit(kiosk_key, path, conversation_id):
    await database_sync_to_async(route_to)(path)
    spoken = conversation(conversation_id)
    # Legacy hears the visitor in real time (not the replies played out); Realtime's emulator takes audio at any pace.
    result = await speak_conversation(kiosk_key, spoken, path, pace=path == "legacy", play_out=False)
    assert result.right, (result.wrong, result.heard)
    assert result.visitor_turns >= len(spoken.lines) and result.first_audio
    await assert_no_leaked_tasks()


def test_the_corpus_typed_leaves_the_expected_visits():
    """The corpus's lines as text (no speech): what is understood must already give every expected visit."""
    wrong = {}
    for typed in CORPUS:
        set_presence(typed.absent, False)
        session_id = f"typed-{typed.id}"
        workflow.start(session_id, typed.language, None)
        for line in typed.lines:
            workflow.handle_text(session_id, line.text.replace("|", "" if typed.language == "ja" else " "))
        set_presence(typed.absent, True)
        visit = Visit.objects.select_related("host").get(session_id=session_id)
        wrong[typed.id] = differences(visit, typed.expected)
    assert {key: value for key, value in wrong.items() if value} == {}


@pytest.mark.parametrize(
    ("language", "said", "host"), [("ja", "いいえ、高橋です。", "佐藤"), ("en", None, "Ichiro Tanaka")]
)
def test_the_visitor_corrects_a_read_back_of_another_name_before_agreeing(language, said, host):
    """The corpus's visitor listens to the read-back: another name than theirs is corrected, theirs is agreed to."""
    spoken = conversation("ja-takahashi-slow-high-noise" if language == "ja" else "en-smith-two-turns")
    visitor = Visitor(None, spoken, pace=False, play_out=False)
    name = spoken.expected.visitor_name
    said = said or f"No, my name is {name}."

    def read_back(heard: str) -> str:
        confirm_host = say("confirm_host", language, host=host)
        purpose = spoken.expected.purpose
        return say(
            "confirm", language, company=spoken.expected.company_name, name=heard, host=confirm_host, purpose=purpose
        )

    agree = Line("はい。" if language == "ja" else "Yes, that's right.")
    assert visitor._answer(read_back("探し" if language == "ja" else "Jon Smit"), agree) == said
    assert visitor._answer(read_back(name), agree) is None


def test_the_visitor_asked_for_the_correct_details_gives_them_all():
    visitor = Visitor(None, conversation("ja-absent-host-pause-high-noise"), pace=False, play_out=False)
    asked = say("ask_correction", "ja")
    said = visitor._answer(asked, Line("はい、お願いします。"))
    assert said == "株式会社テストの山田太郎です。鈴木さんと十時のお約束です。"
    english = Visitor(None, conversation("en-smith-two-turns"), pace=False, play_out=False)
    assert english._answer(say("ask_correction", "en"), Line("Yes, that's right.")) == (
        "My name is John Smith from Acme Corp. I have an appointment with Ichiro Tanaka at two o'clock."
    )
