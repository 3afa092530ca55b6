"""Scripted kiosk conversations through the reception workflow (Japanese and English, text and tool calls).

Each script is a list of turns: what the visitor says (text, or ("tool", name, arguments)) and what must hold
after the turn (fragments of the reply, fields of the visit, finished). After the script, the
notifications sent (by recipient) and the Visit row are checked against the database.
"""

from __future__ import annotations

import pytest
from django.core import mail

from reception.models import HostNotification, Visit
from reception.workflow import ReceptionWorkflow

ONE_SENTENCE_JA = "株式会社テストの山田太郎です。営業部の田中さんと10時にお約束しています"
ONE_SENTENCE_EN = "Hi, I'm John Smith from Acme Corp, here to see Mr. Sato about the contract"
CONFIRM_JA = "確認いたします"
CONFIRM_EN = "Let me confirm"

SCRIPTS = [
    pytest.param(
        "ja",
        [
            (ONE_SENTENCE_JA, {"says": [CONFIRM_JA, "株式会社テスト", "山田太郎"], "status": "confirming"}),
            (
                "はい",
                {
                    "says": ["お待ちしておりました", "田中一郎", "会議室A", "1階ロビーのソファ"],
                    "status": "host_notified",
                    "type": "appointment",
                    "finished": True,
                },
            ),
        ],
        {"notified": ["ichiro.tanaka@example.com"], "appointment_found": True, "host": "tanaka_ichiro"},
        id="ja-appointment-everything-in-one-sentence",
    ),
    pytest.param(
        "ja",
        [
            (
                "テスト株式会社から参りました",
                {"says": ["お名前", "ご用件"], "visit": {"company_name": "テスト株式会社"}},
            ),
            ("山田です", {"says": ["ご用件"], "not_says": ["お名前"], "visit": {"visitor_name": "山田"}}),
            ("打ち合わせです", {"says": ["担当者"], "visit": {"purpose": "打ち合わせ"}}),
            ("田中一郎さんです", {"says": [CONFIRM_JA, "田中一郎"], "visit": {"host_name": "田中一郎"}}),
            ("はい", {"says": ["お待ちしておりました", "会議室A"], "status": "host_notified", "type": "appointment"}),
        ],
        {"notified": ["ichiro.tanaka@example.com"], "appointment_found": True, "host": "tanaka_ichiro"},
        id="ja-step-by-step-appointment-found-by-surname",
    ),
    pytest.param(
        "ja",
        [
            (ONE_SENTENCE_JA, {"says": [CONFIRM_JA]}),
            ("いいえ", {"says": ["正しい内容"], "status": "collecting"}),
            ("山本です", {"says": [CONFIRM_JA, "山本"], "visit": {"visitor_name": "山本"}}),
            (
                "はい",
                {
                    "says": ["お約束は確認できませんでした", "田中一郎"],
                    "status": "host_notified",
                    "type": "no_appointment",
                },
            ),
        ],
        {
            "notified": ["ichiro.tanaka@example.com"],
            "appointment_found": False,
            "host": "tanaka_ichiro",
            "message_has": "お約束なし / No appointment",
        },
        id="ja-iie-at-confirmation-then-correction-no-appointment",
    ),
    pytest.param(
        "ja",
        [
            (ONE_SENTENCE_JA, {"says": [CONFIRM_JA, "山田太郎"]}),
            ("違います、山本です", {"says": [CONFIRM_JA, "山本"], "not_says": ["山田太郎"], "status": "confirming"}),
        ],
        {"notified": []},
        id="ja-direct-correction-at-confirmation",
    ),
    pytest.param(
        "ja",
        [
            ("テスト株式会社の山田です", {"says": ["ご用件"], "visit": {"company_name": "テスト株式会社"}}),
            (
                "すみません、会社名はサンプル商事です",
                {"says": ["ご用件"], "visit": {"company_name": "サンプル商事", "visitor_name": "山田"}},
            ),
        ],
        {"notified": [], "correction_count": 1},
        id="ja-correction-during-collection",
    ),
    pytest.param(
        "ja",
        [
            (
                "お届け物です",
                {
                    "says": ["受付カウンター"],
                    "not_says": [CONFIRM_JA],
                    "status": "delivery_guided",
                    "type": "delivery",
                    "finished": True,
                },
            )
        ],
        {"notified": ["desk@example.com"], "message_has": "お届け物です"},
        id="ja-delivery-without-signature-no-confirmation",
    ),
    pytest.param(
        "ja",
        [
            (
                "宅配便です。受け取りのサインをお願いします",
                {"says": ["呼び出しベル"], "status": "delivery_guided", "type": "delivery", "finished": True},
            )
        ],
        {"notified": ["desk@example.com"], "message_has": "受領サイン要"},
        id="ja-delivery-with-signature-rings-the-bell",
    ),
    pytest.param(
        "ja",
        [
            (
                "株式会社セールスの佐々木と申します。新商品のご紹介に伺いました",
                {"says": [CONFIRM_JA, "佐々木"], "not_says": ["担当者"], "visit": {"visitor_type": "sales"}},
            ),
            ("はい", {"says": ["お約束のない営業", "資料"], "status": "declined", "type": "sales", "finished": True}),
        ],
        {"notified": []},
        id="ja-sales-without-host-declined",
    ),
    pytest.param(
        "ja",
        [
            ("株式会社サンプルの中村です。打ち合わせで伺いました", {"says": ["担当者"]}),
            ("山口さんです", {"says": [CONFIRM_JA, "山口"]}),
            (
                "はい",
                {
                    "says": ["山口という者が見つかりませんでした", "受付"],
                    "status": "sent_to_desk",
                    "type": "no_appointment",
                },
            ),
        ],
        {"notified": ["desk@example.com"], "message_has": "担当者が見つかりません"},
        id="ja-unknown-host-to-desk",
    ),
    pytest.param(
        "ja",
        [
            ("株式会社サンプルの中村です。鈴木さんと打ち合わせです", {"says": [CONFIRM_JA]}),
            ("はい", {"says": ["鈴木美咲は本日不在"], "status": "sent_to_desk", "finished": True}),
        ],
        {"notified": ["desk@example.com"], "host": "suzuki", "message_has": "担当者が不在です"},
        id="ja-absent-host-to-desk",
    ),
    pytest.param(
        "ja",
        [
            ("株式会社サンプルの中村です。田中さんと打ち合わせです", {"says": [CONFIRM_JA]}),
            ("はい", {"says": ["田中という者は複数おります", "営業部", "開発部"], "finished": False}),
            ("開発部です", {"says": ["田中花子", "お約束は確認できませんでした"], "status": "host_notified"}),
        ],
        {"notified": ["hanako.tanaka@example.com"], "host": "tanaka_hanako"},
        id="ja-ambiguous-host-resolved-by-department",
    ),
    pytest.param(
        "ja",
        [
            ("株式会社サンプルの中村です。田中さんと打ち合わせです", {"says": [CONFIRM_JA]}),
            ("はい", {"says": ["複数おります"]}),
            ("わかりません", {"says": ["複数おります"], "finished": False}),
            ("えーと", {"says": ["受付の者に連絡しました"], "status": "sent_to_desk", "finished": True}),
        ],
        {"notified": ["desk@example.com"], "message_has": "担当者を特定できません"},
        id="ja-ambiguous-host-unresolved-to-desk",
    ),
    pytest.param(
        "ja",
        [
            ("株式会社テストの山田太郎です。田中さんと打ち合わせの約束です", {"says": [CONFIRM_JA]}),
            (
                "はい",
                {
                    "says": ["お待ちしておりました", "田中一郎", "会議室A"],
                    "not_says": ["複数"],
                    "status": "host_notified",
                },
            ),
        ],
        {"notified": ["ichiro.tanaka@example.com"], "appointment_found": True, "host": "tanaka_ichiro"},
        id="ja-appointment-resolves-ambiguous-host",
    ),
    pytest.param(
        "ja",
        [
            ("えーと", {"says": ["聞き取れませんでした", "会社名"], "status": "collecting"}),
            ("あのー", {"says": ["聞き取れませんでした"]}),
            ("うーん", {"says": ["受付の者に連絡しました"], "status": "sent_to_desk", "finished": True}),
        ],
        {"notified": ["desk@example.com"], "message_has": "会話が進みません"},
        id="ja-repeated-unclear-input-goes-to-desk",
    ),
    pytest.param(
        "ja",
        [
            (ONE_SENTENCE_JA, {"says": [CONFIRM_JA]}),
            ("いいえ", {"says": ["正しい内容"]}),
            ("山本です", {"says": [CONFIRM_JA, "山本"]}),
            ("違います、山川です", {"says": [CONFIRM_JA, "山川"]}),
            (
                "違います、山口です",
                {
                    "not_says": [CONFIRM_JA],
                    "visit": {"visitor_name": "山口"},
                    "status": "host_notified",
                    "finished": True,
                },
            ),
        ],
        {"notified": ["ichiro.tanaka@example.com"], "correction_count": 3},
        id="ja-three-corrections-then-proceeds-without-confirming-again",
    ),
    pytest.param(
        "en",
        [
            (ONE_SENTENCE_EN, {"says": [CONFIRM_EN, "John Smith", "Acme Corp", "contract"], "status": "confirming"}),
            (
                "yes",
                {
                    "says": ["expecting you", "Ken Sato", "Meeting Room B"],
                    "status": "host_notified",
                    "type": "appointment",
                    "finished": True,
                },
            ),
        ],
        {"notified": ["ken.sato@example.com"], "appointment_found": True, "host": "sato"},
        id="en-appointment-everything-in-one-sentence",
    ),
    pytest.param(
        "en",
        [
            ("My name is Jane Doe", {"says": ["your company name"], "visit": {"visitor_name": "Jane Doe"}}),
            ("Globex", {"says": ["purpose of your visit"], "visit": {"company_name": "Globex"}}),
            ("A meeting", {"says": ["the person you are visiting"], "visit": {"purpose": "meeting"}}),
            ("Ms. Tanaka from the development team", {"says": [CONFIRM_EN, "Tanaka"]}),
            (
                "yes",
                {
                    "says": ["Hanako Tanaka", "could not find an appointment"],
                    "status": "host_notified",
                    "type": "no_appointment",
                },
            ),
        ],
        {"notified": ["hanako.tanaka@example.com"], "host": "tanaka_hanako", "message_has": "No appointment"},
        id="en-step-by-step-department-narrows-host",
    ),
    pytest.param(
        "en",
        [
            (
                "I have a package for your office, it needs a signature",
                {"says": ["ring the bell"], "status": "delivery_guided", "type": "delivery", "finished": True},
            )
        ],
        {"notified": ["desk@example.com"]},
        id="en-delivery-with-signature",
    ),
    pytest.param(
        "en",
        [
            (
                "Delivery from Yamato",
                {
                    "says": ["leave the package"],
                    "status": "delivery_guided",
                    "visit": {"company_name": "Yamato"},
                    "finished": True,
                },
            )
        ],
        {"notified": ["desk@example.com"]},
        id="en-delivery-without-signature",
    ),
    pytest.param(
        "en",
        [
            ("I'm Bob Lee from Initech, I'd like to introduce our new product", {"says": [CONFIRM_EN, "Bob Lee"]}),
            ("yes", {"says": ["do not accept sales visits", "business card"], "status": "declined", "type": "sales"}),
        ],
        {"notified": []},
        id="en-sales-declined",
    ),
    pytest.param(
        "en",
        [
            ("Hi, I'm John Smyth from Acme Corp, here to see Mr. Sato about the contract", {"says": ["John Smyth"]}),
            (
                "no, my name is John Smith",
                {"says": [CONFIRM_EN, "John Smith"], "visit": {"visitor_name": "John Smith"}},
            ),
            ("yes", {"says": ["expecting you"], "status": "host_notified", "type": "appointment"}),
        ],
        {"notified": ["ken.sato@example.com"], "appointment_found": True, "correction_count": 1},
        id="en-no-my-name-is-correction-then-appointment",
    ),
    pytest.param(
        "en",
        [
            ("I'm Alice Wong from Contoso, here to see Mr. Johnson about the budget", {"says": [CONFIRM_EN]}),
            ("yes", {"says": ["could not find Johnson"], "status": "sent_to_desk"}),
        ],
        {"notified": ["desk@example.com"]},
        id="en-unknown-host",
    ),
    pytest.param(
        "en",
        [
            ("I'm Alice Wong from Contoso, here to see Ms. Suzuki about the budget", {"says": [CONFIRM_EN]}),
            ("yes", {"says": ["Misaki Suzuki is not in the office today"], "status": "sent_to_desk"}),
        ],
        {"notified": ["desk@example.com"], "host": "suzuki"},
        id="en-absent-host",
    ),
    pytest.param(
        "en",
        [
            ("I'm Alice Wong from Contoso, here to see Ms. Tanaka about the budget", {"says": [CONFIRM_EN]}),
            ("yes", {"says": ["more than one Tanaka", "Sales", "Development"]}),
            ("Sales, please", {"says": ["Ichiro Tanaka"], "status": "host_notified"}),
        ],
        {"notified": ["ichiro.tanaka@example.com"], "host": "tanaka_ichiro"},
        id="en-ambiguous-host",
    ),
    pytest.param(
        "en",
        [
            (ONE_SENTENCE_EN, {"says": [CONFIRM_EN]}),
            ("hmm", {"says": ["answer yes"], "status": "confirming"}),
            ("maybe later", {"says": ["answer yes"]}),
            ("banana", {"says": ["called the reception staff"], "status": "sent_to_desk", "finished": True}),
        ],
        {"notified": ["desk@example.com"]},
        id="en-repeated-unclear-confirmation-goes-to-desk",
    ),
    pytest.param(
        "en",
        [
            (
                ("tool", "collect_visitor_info", {"visitor_name": "John Smith", "company_name": "Acme Corp"}),
                {"says": ["purpose of your visit"], "visit": {"visitor_name": "John Smith"}},
            ),
            ("I'm here to see Mr. Sato about the contract", {"says": [CONFIRM_EN, "John Smith", "contract"]}),
            (
                ("tool", "confirm_visitor_info", {"confirmed": True}),
                {"says": ["expecting you"], "status": "host_notified", "finished": True},
            ),
        ],
        {"notified": ["ken.sato@example.com"], "appointment_found": True},
        id="tool-calls-and-text-in-one-session",
    ),
    pytest.param(
        "ja",
        [
            (
                (
                    "tool",
                    "collect_visitor_info",
                    {
                        "visitor_name": "山田太郎",
                        "company_name": "株式会社テスト",
                        "purpose": "打ち合わせ",
                        "host_name": "田中一郎",
                    },
                ),
                {"says": [CONFIRM_JA], "status": "confirming"},
            ),
            (("tool", "collect_visitor_info", {"visitor_name": "山田花子"}), {"says": [CONFIRM_JA, "山田花子"]}),
            ("はい", {"says": ["お約束は確認できませんでした"], "type": "no_appointment"}),
        ],
        {"notified": ["ichiro.tanaka@example.com"], "correction_count": 1},
        id="tool-call-correction-at-confirmation",
    ),
    pytest.param(
        "en",
        [
            (
                ("tool", "report_delivery", {"needs_signature": True, "company_name": "DHL"}),
                {"says": ["ring the bell"], "status": "delivery_guided", "visit": {"company_name": "DHL"}},
            )
        ],
        {"notified": ["desk@example.com"]},
        id="tool-delivery",
    ),
]


def _turn(workflow: ReceptionWorkflow, session_id: str, utterance):
    if isinstance(utterance, tuple):
        _, name, arguments = utterance
        result = workflow.handle_tool_call(session_id, name, arguments)
        assert result.output["ok"] is True, result.output
        assert result.output["reply"] == result.turn.reply
        return result.turn
    return workflow.handle_text(session_id, utterance)


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "turns", "after"), SCRIPTS)
def test_conversation(workflow, kiosk, directory, language, turns, after):
    session_id = "conv-test"
    first = workflow.start(session_id, language, kiosk.pk)
    assert first.reply.startswith("いらっしゃいませ" if language == "ja" else "Welcome")
    assert Visit.objects.get(session_id=session_id).status == Visit.Status.COLLECTING
    for utterance, expect in turns:
        result = _turn(workflow, session_id, utterance)
        context = f"after {utterance!r}: {result.reply}"
        for fragment in expect.get("says", []):
            assert fragment in result.reply, context
        for fragment in expect.get("not_says", []):
            assert fragment not in result.reply, context
        for key, value in expect.get("visit", {}).items():
            assert result.visit[key] == value, context
        if "status" in expect:
            assert result.visit["status"] == expect["status"], context
        if "type" in expect:
            assert result.visit["visitor_type"] == expect["type"], context
        if "finished" in expect:
            assert result.finished is expect["finished"], context
        assert set(result.visit) == {"visitor_name", "company_name", "purpose", "host_name", "visitor_type", "status"}
        # The Visit row is the projection of the state after every turn.
        visit = Visit.objects.get(session_id=session_id)
        assert (visit.status, visit.visitor_name, visit.visitor_type) == (
            result.visit["status"],
            result.visit["visitor_name"],
            result.visit["visitor_type"],
        ), context

    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == sorted(after["notified"])
    visit = Visit.objects.get(session_id=session_id)
    assert HostNotification.objects.filter(visit=visit, status=HostNotification.Status.SENT).count() == len(
        after["notified"]
    )
    if "appointment_found" in after:
        assert visit.appointment_found is after["appointment_found"]
    if "host" in after:
        assert visit.host == directory[after["host"]]
    if "message_has" in after:
        assert any(after["message_has"] in message.body for message in mail.outbox)
    if "correction_count" in after:
        state = workflow._state(session_id)
        assert state["correction_count"] == after["correction_count"]
    if visit.status not in (Visit.Status.COLLECTING, Visit.Status.CONFIRMING):
        assert visit.completed_at is not None
    assert "kiosk_key" not in str([m.body for m in mail.outbox])
    assert kiosk.key_hash not in str([m.body for m in mail.outbox])
