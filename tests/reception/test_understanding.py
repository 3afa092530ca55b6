"""Language understanding: the rule-based reader (ja/en) and the chat-model reader with its fallback."""

from __future__ import annotations

import json

import httpx
import pytest

from reception.workflow.chat import OpenAIChatUnderstanding, get_understanding
from reception.workflow.names import Person
from reception.workflow.rules import RuleBasedUnderstanding
from reception.workflow.understanding import Understanding

STAFF = [
    Person(1, "田中 一郎", "たなか いちろう", "Ichiro Tanaka", "営業部"),
    Person(2, "田中 花子", "たなか はなこ", "Hanako Tanaka", "開発部"),
    Person(3, "佐藤 健", "さとう けん", "Ken Sato", "総務部"),
]


@pytest.fixture
def rules():
    return RuleBasedUnderstanding(lambda: STAFF)


@pytest.mark.parametrize(
    ("text", "expecting", "expected"),
    [
        (
            "株式会社テストの山田太郎です。営業部の田中さんと10時にお約束しています",
            "",
            {
                "visitor_name": "山田太郎",
                "company_name": "株式会社テスト",
                "host_name": "田中",
                "host_department": "営業部",
                "purpose": "10時のお約束",
                "visitor_type": "appointment",
            },
        ),
        ("山田です", "", {"visitor_name": "山田"}),
        ("山田です", "visitor_name", {"visitor_name": "山田"}),
        ("テスト株式会社から参りました", "", {"company_name": "テスト株式会社", "visitor_name": ""}),
        ("サンプルから参りました", "", {"company_name": "サンプル"}),
        ("田中様にお会いしに来ました", "", {"host_name": "田中", "visitor_name": ""}),
        ("たなかさんお願いします", "host_name", {"host_name": "たなか"}),
        ("お届け物。", "host_name", {"visitor_type": "delivery", "host_name": ""}),  # a delivery word is no name
        ("田中一郎様にお会いしに来ました", "", {"host_name": "田中一郎"}),  # the longest staff name said
        ("佐藤と申します。タナカさんにお約束です", "", {"host_name": "タナカ", "visitor_name": "佐藤"}),
        ("佐藤さんに会いに来ました", "", {"host_name": "佐藤"}),
        ("お届け物です", "", {"visitor_type": "delivery", "needs_signature": False, "visitor_name": ""}),
        ("宅配便です", "", {"visitor_type": "delivery", "visitor_name": ""}),
        ("ヤマト運輸です。お荷物のお届けに参りました", "", {"visitor_type": "delivery", "company_name": "ヤマト運輸"}),
        ("郵便です。受領印をお願いします", "", {"visitor_type": "delivery", "needs_signature": True}),
        # 受領印 as Whisper wrote it on the spoken corpus: the same sound in other kanji.
        ("佐川急便です。お届けで、受量印をお願いします", "", {"visitor_type": "delivery", "needs_signature": True}),
        ("新商品のご紹介に伺いました", "", {"visitor_type": "sales", "purpose": "新商品のご紹介"}),
        ("山田花子と申します。テスト商事の者です", "", {"visitor_name": "山田花子", "company_name": "テスト商事"}),
        ("テストです", "company_name", {"company_name": "テスト", "visitor_name": ""}),
        ("個人です", "company_name", {"company_name": "個人"}),
        ("打ち合わせです", "purpose", {"purpose": "打ち合わせ"}),
        ("はい", "confirmation", {"answer": True, "is_correction": False}),
        ("はい、そうです", "confirmation", {"answer": True, "visitor_name": ""}),
        ("いいえ", "confirmation", {"answer": False, "is_correction": True}),
        ("違います", "confirmation", {"answer": False}),
        ("違います、山本です", "confirmation", {"answer": False, "visitor_name": "山本", "is_correction": True}),
        ("えーと", "visitor_name", {"visitor_name": ""}),
        ("はい、おめがいします。", "visitor_name", {"visitor_name": "", "answer": True}),  # お願いします misheard
        ("ＡＢＣ株式会社の鈴木です", "", {"company_name": "ABC株式会社", "visitor_name": "鈴木"}),
        # "Not A but B": B goes to the field A names (a host with an honorific or on the staff, a company, a name).
        (
            "いいえ、佐藤さんではなく鈴木さんです。",
            "confirmation",
            {"host_name": "鈴木", "visitor_name": "", "is_correction": True},
        ),
        ("いいえ、佐藤ではなく田中です。", "confirmation", {"host_name": "田中", "visitor_name": ""}),
        ("山田ではなく山本です", "confirmation", {"visitor_name": "山本", "host_name": ""}),
        # 「鈴木ではなく佐藤です」 with 鈴木 misheard: who replaces it is one of the staff, so it is the host.
        ("続きではなく佐藤です。", "confirmation", {"host_name": "佐藤", "visitor_name": ""}),
        ("株式会社テストじゃなくて株式会社サンプルです", "confirmation", {"company_name": "株式会社サンプル"}),
        # いいえ heard as お届け (the recognition prompt ends with お届け物): what is said to be wrong makes no visit.
        ("お届けではなく佐藤です。", "confirmation", {"host_name": "佐藤", "visitor_type": "", "purpose": ""}),
        ("いいえ、十時ではなく十一時です。", "confirmation", {"purpose": "11時のお約束", "visitor_name": ""}),
        ("いいえ、十時ではなく十一時のお約束です。", "confirmation", {"purpose": "11時のお約束", "visitor_name": ""}),
    ],
)
def test_japanese(rules, text, expecting, expected):
    result = rules.understand(text, "ja", expecting)
    for key, value in expected.items():
        assert getattr(result, key) == value, (key, result)


@pytest.mark.parametrize(
    ("text", "expecting", "expected"),
    [
        (
            "Hi, I'm John Smith from Acme Corp, here to see Ms. Tanaka about the contract",
            "",
            {"visitor_name": "John Smith", "company_name": "Acme Corp", "host_name": "Tanaka", "purpose": "contract"},
        ),
        ("My name is Jane Doe", "", {"visitor_name": "Jane Doe", "company_name": ""}),
        ("my name is jane doe", "", {"visitor_name": "Jane Doe"}),
        ("I'm here to see Mr. Sato", "", {"visitor_name": "", "host_name": "Sato"}),
        ("I have a delivery", "", {"visitor_type": "delivery", "needs_signature": False, "visitor_name": ""}),
        ("I have a package that needs a signature", "", {"visitor_type": "delivery", "needs_signature": True}),
        (
            "no, my name is Taro Yamada",
            "confirmation",
            {"visitor_name": "Taro Yamada", "is_correction": True, "answer": False},
        ),
        ("yes", "confirmation", {"answer": True, "is_correction": False}),
        ("Yes, that's right", "confirmation", {"answer": True}),
        ("no", "confirmation", {"answer": False}),
        (
            "I am here for an interview with Mr. Sato",
            "",
            {"purpose": "interview", "host_name": "Sato", "visitor_type": "appointment"},
        ),
        (
            "I'd like to introduce our new product",
            "",
            {"visitor_type": "sales", "purpose": "introduce our new product"},
        ),
        ("Acme", "company_name", {"company_name": "Acme"}),
        ("Mr. Sato please", "host_name", {"host_name": "Sato"}),
        ("A delivery.", "host_name", {"visitor_type": "delivery", "host_name": ""}),
        ("The development one", "host_choice", {"host_department": "The development one"}),
        ("hmm", "visitor_name", {"visitor_name": ""}),
        ("No, not Ken Sato but Ichiro Tanaka.", "confirmation", {"host_name": "Ichiro Tanaka", "is_correction": True}),
        ("Not Smith, but Smyth.", "confirmation", {"visitor_name": "Smyth", "host_name": ""}),
        ("No, not at ten but at eleven.", "confirmation", {"purpose": "appointment at 11:00", "visitor_name": ""}),
    ],
)
def test_english(rules, text, expecting, expected):
    result = rules.understand(text, "en", expecting)
    for key, value in expected.items():
        assert getattr(result, key) == value, (key, result)


def test_empty_input_is_empty(rules):
    assert rules.understand("   ", "ja") == Understanding()
    assert rules.understand("", "en") == Understanding()


def test_found_lists_only_given_fields():
    assert Understanding(visitor_name="A", purpose="B").found() == {"visitor_name": "A", "purpose": "B"}


def _chat_client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_chat_model_result_is_used(settings):
    settings.OPENAI_API_KEY = "sk-test-secret"
    settings.OPENAI_BASE_URL = "https://llm.example/v1"
    settings.OPENAI_CHAT_MODEL = "test-model"
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers["authorization"]
        seen["body"] = json.loads(request.content)
        content = json.dumps(
            {
                "visitor_name": "山田 太郎",
                "company_name": "テスト",
                "purpose": "打ち合わせ",
                "host_name": "田中さん",
                "visitor_type": "appointment",
                "answer": None,
                "is_correction": False,
                "unexpected": 1,
            }
        )
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    reader = OpenAIChatUnderstanding(client=_chat_client(handler), directory=lambda: STAFF)
    result = reader.understand("やまだです", "ja", "visitor_name")
    assert result.visitor_name == "山田 太郎" and result.host_name == "田中" and result.visitor_type == "appointment"
    assert seen["url"] == "https://llm.example/v1/chat/completions"
    assert seen["auth"] == "Bearer sk-test-secret"
    assert seen["body"]["model"] == "test-model"
    assert seen["body"]["response_format"] == {"type": "json_object"}
    assert "田中 一郎" in seen["body"]["messages"][0]["content"]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, json={"error": "boom"}),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"choices": [{"message": {"content": "not json"}}]}),
        httpx.Response(200, json={"choices": [{"message": {"content": "[1, 2]"}}]}),
    ],
)
def test_chat_model_errors_fall_back_to_rules_without_logging_the_key(settings, caplog, response):
    settings.OPENAI_API_KEY = "sk-test-secret"
    reader = OpenAIChatUnderstanding(client=_chat_client(lambda request: response), directory=lambda: STAFF)
    result = reader.understand("株式会社テストの山田です", "ja")
    assert result.visitor_name == "山田" and result.company_name == "株式会社テスト"
    assert "sk-test-secret" not in caplog.text
    assert "chat understanding failed" in caplog.text


def test_chat_model_transport_error_falls_back(settings):
    settings.OPENAI_API_KEY = "sk-test-secret"

    def handler(request):
        raise httpx.ConnectError("refused")

    reader = OpenAIChatUnderstanding(client=_chat_client(handler), directory=lambda: STAFF)
    assert reader.understand("I have a delivery", "en").visitor_type == "delivery"


def test_get_understanding_picks_by_settings(settings):
    settings.OPENAI_API_KEY = ""
    assert isinstance(get_understanding(), RuleBasedUnderstanding)
    settings.OPENAI_API_KEY = "sk-x"
    settings.LEGACY_ENGINES = "openai"
    assert isinstance(get_understanding(), OpenAIChatUnderstanding)
    settings.LEGACY_ENGINES = "local"
    assert isinstance(get_understanding(), RuleBasedUnderstanding)


def test_brackets_from_speech_recognition_do_not_reach_the_name():
    understood = RuleBasedUnderstanding(directory=list).understand("株式会社テストの山田太郎（です。", "ja")
    assert understood.visitor_name.replace(" ", "") == "山田太郎"
    assert understood.company_name == "株式会社テスト"
