"""The spoken test corpus: visitors' conversations as data, each with the visit it must leave behind.

Every visitor line is spoken by the local voices (Open JTalk for ja, Piper for en) at the line's speed; a "|" in
a line is a pause inside the sentence, longer than both paths' end-of-speech silence, so that the turn splits
there; `noise` mixes pink noise at 20 dB ("low") or 10 dB ("high") below the speech. Names, companies, hosts and
times are those of the demo directory and today's appointments (`reception.demo`), so the fields can be checked.
`absent` names staff who are out of the office during the conversation.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from reception.models import Visit

PAUSE_MS = 900  # longer than Realtime's 500 ms server VAD silence and Legacy's 600 ms end-of-speech silence
NOISE_SNR_DB = {"none": None, "low": 20.0, "high": 10.0}


@dataclass(frozen=True)
class Line:
    """One thing the visitor says: the text ("|" marks a pause), how fast, over how much background noise."""

    text: str
    speed: float = 1.0
    noise: str = "none"


@dataclass(frozen=True)
class Expected:
    """The visit a conversation must leave: type and status always; the other fields when given ("" = unchecked).

    `host` is the staff member's name as in the directory; `purpose` a part the stored purpose must contain."""

    visitor_type: str
    status: str
    visitor_name: str = ""
    company_name: str = ""
    host: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class Conversation:
    id: str
    language: str
    lines: tuple[Line, ...]
    expected: Expected
    absent: tuple[str, ...] = field(default=())
    note: str = ""


def _appointment(name: str, company: str, host: str, purpose: str, status: str = "host_notified") -> Expected:
    return Expected("appointment", status, name, company, host, purpose)


def _delivery(purpose: str, company: str = "") -> Expected:
    return Expected("delivery", "delivery_guided", company_name=company, purpose=purpose)


YAMADA = _appointment("山田太郎", "株式会社テスト", "鈴木 花子", "10時のお約束")
TAKAHASHI = _appointment("高橋誠", "サンプル商事", "佐藤 健", "16時のお約束")
SMITH = _appointment("John Smith", "Acme Corp", "田中 一郎", "appointment at 14:00")
YES_JA, YES_EN = "はい、お願いします。", "Yes, that's right."

CORPUS: tuple[Conversation, ...] = (
    # --- Japanese: expected visitors, two turns or one, at three speeds, with pauses and noise ---------------
    Conversation(
        "ja-yamada-two-turns",
        "ja",
        (Line("株式会社テストの山田太郎です。"), Line("鈴木さんと十時にお約束があります。"), Line(YES_JA)),
        YAMADA,
    ),
    Conversation(
        "ja-yamada-pause",
        "ja",
        (Line("株式会社テストの山田太郎です。|鈴木さんと、十時にお約束があります。"), Line(YES_JA)),
        YAMADA,
        note="the first issue-15 story: the pause splits the sentence",
    ),
    Conversation(
        "ja-yamada-fast-low-noise",
        "ja",
        (
            Line("株式会社テストの山田太郎です。鈴木さんと十時にお約束があります。", 1.2, "low"),
            Line(YES_JA, 1.2, "low"),
        ),
        YAMADA,
    ),
    Conversation(
        "ja-yamada-slow-high-noise",
        "ja",
        (
            Line("株式会社テストの山田太郎と申します。", 0.85, "high"),
            Line("鈴木さんと十時にお約束しています。", 0.85, "high"),
            Line("はい。", 0.85, "high"),
        ),
        YAMADA,
    ),
    Conversation(
        "ja-takahashi-one-turn",
        "ja",
        (Line("サンプル商事の高橋誠と申します。佐藤さんと十六時にお約束があります。"), Line(YES_JA)),
        TAKAHASHI,
    ),
    Conversation(
        "ja-takahashi-fast-pause-low-noise",
        "ja",
        (
            Line("サンプル商事の高橋誠です。|佐藤さんと十六時にお約束があります。", 1.2, "low"),
            Line("はい。", 1.2, "low"),
        ),
        TAKAHASHI,
    ),
    Conversation(
        "ja-takahashi-slow-high-noise",
        "ja",
        (
            Line("サンプル商事の高橋です。", 0.85, "high"),
            Line("佐藤さんと十六時にお約束があります。", 0.85, "high"),
            Line(YES_JA, 0.85, "high"),
        ),
        _appointment("高橋", "サンプル商事", "佐藤 健", "16時のお約束"),
    ),
    Conversation(
        "ja-yamada-pause-in-name",
        "ja",
        (Line("株式会社テストの、|山田太郎です。"), Line("鈴木さんと十時のお約束です。", 1.2), Line(YES_JA)),
        YAMADA,
    ),
    # --- Japanese: corrections at the confirmation ----------------------------------------------------------
    Conversation(
        "ja-correct-host",
        "ja",
        (
            Line("株式会社テストの山田太郎です。佐藤さんと十時にお約束があります。"),
            Line("いいえ、佐藤さんではなく鈴木さんです。"),
            Line(YES_JA),
        ),
        YAMADA,
    ),
    Conversation(
        "ja-correct-host-low-noise",
        "ja",
        (
            Line("サンプル商事の高橋誠です。鈴木さんと十六時にお約束があります。", 1.0, "low"),
            Line("いいえ、鈴木ではなく佐藤です。", 1.0, "low"),
            Line("はい。", 1.0, "low"),
        ),
        TAKAHASHI,
    ),
    # --- Japanese: the host is out of the office ------------------------------------------------------------
    Conversation(
        "ja-absent-host",
        "ja",
        (Line("サンプル商事の高橋誠です。佐藤さんと十六時にお約束があります。"), Line(YES_JA)),
        _appointment("高橋誠", "サンプル商事", "佐藤 健", "16時のお約束", status="sent_to_desk"),
        absent=("佐藤 健",),
    ),
    Conversation(
        "ja-absent-host-pause-high-noise",
        "ja",
        (
            Line("株式会社テストの山田太郎です。|鈴木さんと十時にお約束があります。", 1.0, "high"),
            Line(YES_JA, 1.0, "high"),
        ),
        _appointment("山田太郎", "株式会社テスト", "鈴木 花子", "10時のお約束", status="sent_to_desk"),
        absent=("鈴木 花子",),
    ),
    # --- Japanese: deliveries and a visit without appointment ------------------------------------------------
    Conversation(
        "ja-delivery",
        "ja",
        (Line("ヤマト運輸です。お届け物をお持ちしました。"),),
        _delivery("お届け物", "ヤマト運輸"),
    ),
    Conversation(
        "ja-delivery-signature-fast-low-noise",
        "ja",
        (Line("佐川急便です。お荷物のお届けで、受領印をお願いします。", 1.2, "low"),),
        _delivery("お届け物（受領サインが必要）", "佐川急便"),
    ),
    Conversation(
        "ja-delivery-slow-high-noise",
        "ja",
        (Line("宅配便のお届けに参りました。", 0.85, "high"),),
        _delivery("お届け物"),
    ),
    Conversation(
        "ja-walk-in",
        "ja",
        (Line("株式会社テストの山田太郎です。田中一郎さんにご挨拶に伺いました。"), Line(YES_JA)),
        Expected("no_appointment", "host_notified", "山田太郎", "株式会社テスト", "田中 一郎", "挨拶"),
    ),
    # --- English -------------------------------------------------------------------------------------------
    Conversation(
        "en-smith-two-turns",
        "en",
        (
            Line("Hello, my name is John Smith from Acme Corp."),
            Line("I have an appointment with Ichiro Tanaka at two o'clock."),
            Line(YES_EN),
        ),
        SMITH,
    ),
    Conversation(
        "en-smith-pause",
        "en",
        (
            Line("Good afternoon, I'm John Smith from Acme Corp.|I have an appointment with Ichiro Tanaka at 2 pm."),
            Line(YES_EN),
        ),
        SMITH,
    ),
    Conversation(
        "en-smith-fast-low-noise",
        "en",
        (
            Line("Hi, I'm John Smith from Acme Corp. I have an appointment with Ichiro Tanaka at two.", 1.2, "low"),
            Line("Yes.", 1.2, "low"),
        ),
        SMITH,
    ),
    Conversation(
        "en-smith-slow-high-noise",
        "en",
        (
            Line("My name is John Smith, from Acme Corp.", 0.85, "high"),
            Line("I'm here to see Ichiro Tanaka. I have an appointment at two o'clock.", 0.85, "high"),
            Line(YES_EN, 0.85, "high"),
        ),
        SMITH,
    ),
    Conversation(
        "en-correct-host",
        "en",
        (
            Line("My name is John Smith from Acme Corp. I have an appointment with Ken Sato at two o'clock."),
            Line("No, not Ken Sato but Ichiro Tanaka."),
            Line(YES_EN),
        ),
        SMITH,
    ),
    Conversation(
        "en-absent-host",
        "en",
        (
            Line("Hello, my name is John Smith from Acme Corp. I have an appointment with Ichiro Tanaka at two."),
            Line(YES_EN),
        ),
        _appointment("John Smith", "Acme Corp", "田中 一郎", "appointment at 14:00", status="sent_to_desk"),
        absent=("田中 一郎",),
    ),
    Conversation(
        "en-delivery",
        "en",
        (Line("Hi, I have a package delivery for your office."),),
        _delivery("delivery"),
    ),
    Conversation(
        "en-delivery-signature-fast-low-noise",
        "en",
        (Line("Hello, I have a parcel for you. It needs a signature.", 1.2, "low"),),
        _delivery("delivery (signature needed)"),
    ),
)


def conversation(conversation_id: str) -> Conversation:
    """The corpus conversation with this id."""
    return next(c for c in CORPUS if c.id == conversation_id)


def plain(text: str) -> str:
    """`text` as compared with an expected field: NFKC, without spaces, case-folded."""
    return unicodedata.normalize("NFKC", text or "").replace(" ", "").casefold()


def differences(visit: Visit | None, expected: Expected) -> list[str]:
    """What in the stored visit differs from the expected one, as "field: expected …, got …" (empty when right)."""
    if visit is None:
        return ["visit: expected one, got none"]
    got = {
        "visitor_type": visit.visitor_type,
        "status": visit.status,
        "visitor_name": visit.visitor_name,
        "company_name": visit.company_name,
        "host": visit.host.name if visit.host else "",
        "purpose": visit.purpose,
    }
    wrong = []
    for name, value in got.items():
        want = getattr(expected, name)
        if not want:
            continue
        right = plain(want) in plain(value) if name == "purpose" else plain(want) == plain(value)
        if not right:
            wrong.append(f"{name}: expected {want!r}, got {value!r}")
    return wrong
