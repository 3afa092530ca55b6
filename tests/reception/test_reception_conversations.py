"""Scripted kiosk conversations through the reception workflow (Japanese and English, text and tool calls).

Each script is a list of turns: what the visitor says (text, or ("tool", name, arguments)) and what must hold
after the turn (fragments of the reply, contract fields of the visit, finished). After the script, the
notifications sent (by recipient) and the Visit row are checked against the database.
"""

from __future__ import annotations

import pytest
from django.core import mail

from reception.models import HostNotification, StaffMember, Visit
from reception.workflow import ReceptionWorkflow, reset_checkpointer

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
        assert result.visit_id == visit.pk

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


@pytest.mark.django_db
def test_resume_after_process_restart_asks_nothing_twice(workflow, kiosk):
    session_id = "resume-1"
    workflow.start(session_id, "ja", kiosk.pk)
    asked = workflow.handle_text(session_id, "テスト株式会社の山田です")
    assert "ご用件" in asked.reply

    reset_checkpointer()  # simulated restart: new checkpointer, new workflow object
    restarted = ReceptionWorkflow()
    resumed = restarted.start(session_id, "ja", kiosk.pk)
    assert resumed.resumed is True
    assert resumed.reply == asked.reply
    assert "いらっしゃいませ" not in resumed.reply
    assert resumed.visit["visitor_name"] == "山田" and resumed.visit["company_name"] == "テスト株式会社"

    nxt = restarted.handle_text(session_id, "打ち合わせです")
    assert "お名前" not in nxt.reply and "会社名" not in nxt.reply
    assert "担当者" in nxt.reply
    assert Visit.objects.filter(session_id=session_id).count() == 1
    assert restarted.snapshot(session_id).visit["purpose"] == "打ち合わせ"


@pytest.mark.django_db
def test_start_twice_on_the_same_process_does_not_greet_again(workflow, kiosk):
    workflow.start("twice", "en", kiosk.pk)
    workflow.handle_text("twice", "My name is Jane Doe")
    again = workflow.start("twice", "en", kiosk.pk)
    assert again.resumed and "your company name" in again.reply
    states = [m for m in workflow._state("twice")["messages"] if m["role"] == "assistant" and "Welcome" in m["text"]]
    assert len(states) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "arguments", "error", "detail"),
    [
        ("book_taxi", {}, "unknown_tool", None),
        ("collect_visitor_info", {"visitor_name": 42}, "invalid_arguments", "visitor_name"),
        ("collect_visitor_info", {"visitor_name": "A", "age": "3"}, "invalid_arguments", "age"),
        ("collect_visitor_info", {}, "invalid_arguments", "*"),
        ("collect_visitor_info", "not a dict", "invalid_arguments", None),
        ("confirm_visitor_info", {"confirmed": "yes"}, "invalid_arguments", "confirmed"),
        ("confirm_visitor_info", {}, "invalid_arguments", "confirmed"),
        ("confirm_visitor_info", {"confirmed": True}, "not_expected", None),
        ("choose_host", {"department": "Sales"}, "not_expected", None),
    ],
)
def test_invalid_tool_calls_get_a_structured_error(workflow, kiosk, name, arguments, error, detail):
    workflow.start("tools-bad", "en", kiosk.pk)
    result = workflow.handle_tool_call("tools-bad", name, arguments)
    assert result.turn is None
    assert result.output["ok"] is False and result.output["error"] == error
    assert result.output["message"]
    if detail:
        assert detail in result.output["details"]
    # The conversation is untouched: still collecting, nothing filled in.
    assert workflow.snapshot("tools-bad").visit["status"] == "collecting"


@pytest.mark.django_db
def test_tool_output_tells_the_model_what_is_missing(workflow, kiosk):
    workflow.start("tools-ok", "ja", kiosk.pk)
    result = workflow.handle_tool_call(
        "tools-ok", "collect_visitor_info", {"visitor_name": "山田太郎", "purpose": None}
    )
    assert result.output["missing"] == ["company_name", "purpose", "host_name"]
    assert result.output["awaiting"] == "company_name"
    assert result.output["visit"]["visitor_name"] == "山田太郎"


@pytest.mark.django_db
def test_end_marks_an_unfinished_visit_ended(workflow, kiosk):
    workflow.start("ending", "ja", kiosk.pk)
    workflow.handle_text("ending", "テスト株式会社の山田です")
    visit_id = workflow.end("ending", "visitor left")
    visit = Visit.objects.get(pk=visit_id)
    assert visit.status == Visit.Status.ENDED and visit.completed_at is not None
    assert workflow.snapshot("ending").finished is True
    assert workflow.end("unknown-session", "x") is None


@pytest.mark.django_db
def test_end_keeps_a_finished_visit_as_it_is(workflow, kiosk):
    workflow.start("done", "ja", kiosk.pk)
    workflow.handle_text("done", "お届け物です")
    visit_id = workflow.end("done", "closed")
    assert Visit.objects.get(pk=visit_id).status == Visit.Status.DELIVERY_GUIDED


@pytest.mark.django_db
def test_a_visit_row_deleted_mid_conversation_is_written_again(workflow, kiosk):
    workflow.start("purged", "ja", kiosk.pk)
    workflow.handle_text("purged", "テスト株式会社の山田です")
    Visit.objects.filter(session_id="purged").delete()  # e.g. an over-eager purge
    result = workflow.handle_text("purged", "打ち合わせです")
    visit = Visit.objects.get(session_id="purged")
    assert result.visit_id == visit.pk
    assert (visit.visitor_name, visit.company_name, visit.purpose) == ("山田", "テスト株式会社", "打ち合わせ")


@pytest.mark.django_db
def test_the_visit_is_completed_once_and_stays_so(workflow, kiosk):
    workflow.start("completed", "ja", kiosk.pk)
    workflow.handle_text("completed", "テスト株式会社の山田です")
    visit = Visit.objects.get(session_id="completed")
    assert visit.completed_at is None
    workflow.handle_text("completed", "お届け物です")
    completed = Visit.objects.get(session_id="completed")
    assert completed.completed_at is not None and completed.updated_at > visit.updated_at
    workflow.handle_text("completed", "すみません、もう一度")  # speaking after the end
    assert Visit.objects.get(session_id="completed").completed_at == completed.completed_at


@pytest.mark.django_db
def test_unreachable_host_sends_visitor_to_desk_honestly(workflow, kiosk, directory):
    StaffMember.objects.filter(pk=directory["sato"].pk).update(email="")
    workflow.start("unreach", "en", kiosk.pk)
    workflow.handle_text("unreach", ONE_SENTENCE_EN)
    result = workflow.handle_text("unreach", "yes")
    assert "could not reach Ken Sato" in result.reply
    assert result.visit["status"] == "sent_to_desk"
    failed = HostNotification.objects.get(recipient=directory["sato"])
    assert failed.status == HostNotification.Status.FAILED and failed.attempts == 3
    assert [m.to for m in mail.outbox] == [["desk@example.com"]]


@pytest.mark.django_db
def test_nobody_reachable_is_said_plainly(workflow, kiosk, directory):
    StaffMember.objects.update(email="")
    workflow.start("nobody", "ja", kiosk.pk)
    workflow.handle_text("nobody", ONE_SENTENCE_JA)
    result = workflow.handle_text("nobody", "はい")
    assert "連絡がつきませんでした" in result.reply and "受付カウンターのスタッフ" in result.reply
    assert not Visit.objects.get(session_id="nobody").host_notified


@pytest.mark.django_db
def test_handle_text_without_start_still_works(workflow):
    result = workflow.handle_text("no-start", "I have a delivery")
    assert result.visit["visitor_type"] == "delivery" and result.finished


@pytest.mark.django_db
def test_forget_deletes_the_conversation_but_keeps_the_visit(workflow, kiosk):
    workflow.start("forget-me", "ja", kiosk.pk)
    workflow.handle_text("forget-me", "テスト株式会社の山田です")
    workflow.forget("forget-me")
    assert workflow.snapshot("forget-me") is None
    assert Visit.objects.get(session_id="forget-me").visitor_name == "山田"


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_checkpointer_survives_a_restart(workflow, kiosk, tmp_path, monkeypatch):
    from urllib.parse import urlparse

    from reception.workflow import checkpoint
    from tests.support.live_server import throwaway_database

    with throwaway_database("postgres", tmp_path) as database_url:
        url = urlparse(database_url)
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username,
            "PASSWORD": url.password,
            "HOST": url.hostname,
            "PORT": url.port,
        }
        monkeypatch.setattr(checkpoint, "_create", lambda: checkpoint._create_postgres(database))
        try:
            reset_checkpointer()
            assert type(checkpoint.get_checkpointer()).__name__ == "PostgresSaver"
            workflow.start("pg-1", "en", kiosk.pk)
            asked = workflow.handle_text("pg-1", "My name is Jane Doe")
            reset_checkpointer()  # simulated restart
            resumed = ReceptionWorkflow().start("pg-1", "en", kiosk.pk)
            assert resumed.resumed and resumed.reply == asked.reply
            assert resumed.visit["visitor_name"] == "Jane Doe"
        finally:
            reset_checkpointer()  # closes the pool before the database is dropped


@pytest.mark.django_db
def test_speaking_after_the_end_repeats_where_to_wait(workflow_settings, appointments):
    """A visitor who missed the closing words (e.g. the voice path changed) hears them again."""
    from reception import workflow

    workflow.start("after-end", "ja", None)
    workflow.handle_text("after-end", "株式会社テストの山田太郎です。鈴木さんと10時にお約束があります。")
    closing = workflow.handle_text("after-end", "はい")
    assert closing.finished
    again = workflow.handle_text("after-end", "はい")
    assert again.reply.startswith("受付は完了しております。")
    assert again.reply.endswith(closing.reply)
    assert again.visit == closing.visit
