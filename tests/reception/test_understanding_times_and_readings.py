"""Times said in words or digits, polite answers that are no names, and names and companies reconciled by reading
with today's appointments and the staff directory (Japanese and English)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from reception.models import Appointment, Visit
from reception.workflow.names import Person, reads_as, recognition_vocabulary
from reception.workflow.outcome import find_appointment
from reception.workflow.reconcile import reconcile
from reception.workflow.rules import RuleBasedUnderstanding
from reception.workflow.times import parse_time, spoken_time
from reception.workflow.understanding import Understanding

STAFF = [
    Person(1, "鈴木 美咲", "すずき みさき", "Misaki Suzuki", "人事部"),
    Person(2, "中村 健", "なかむら けん", "Ken Nakamura", "営業部"),
    Person(3, "佐藤 健", "さとう けん", "Ken Sato", "総務部"),
]


def _today_at(hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate(), time(hour, minute)))


def _appointment(pk: int, name: str, company: str, host_id: int, hour: int) -> Person:
    return Person(pk, name, department=company, extra={"host_id": host_id, "start": _today_at(hour)})


APPOINTMENTS = [
    _appointment(10, "中村 一", "株式会社さくら精機", 1, 10),
    _appointment(11, "山田 太郎", "株式会社テスト", 3, 14),
    _appointment(12, "Jane Doe", "Globex", 3, 16),
]


@pytest.fixture
def rules():
    return RuleBasedUnderstanding(lambda: STAFF)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("十時", (10, 0)),
        ("十四時にお約束", (14, 0)),
        ("10時半", (10, 30)),
        ("午後2時", (14, 0)),
        ("午前十一時十五分", (11, 15)),
        ("２時", (14, 0)),  # office hours: two o'clock is in the afternoon
        ("10:30", (10, 30)),
        ("two o'clock", (14, 0)),
        ("2 pm", (14, 0)),
        ("2:30 p.m.", (14, 30)),
        ("half past ten", (10, 30)),
        ("an appointment at ten", (10, 0)),
        ("充実にお約束", None),
        ("2時間ほど", None),
        ("Q3 2024 report", None),
    ],
)
def test_times_said_in_words_or_digits(said, expected):
    assert parse_time(said) == expected


def test_times_are_read_back_as_times():
    assert spoken_time(10, 0, "ja") == "10時"
    assert spoken_time(14, 30, "ja") == "14時30分"
    assert spoken_time(10, 0, "en") == "10:00"


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("鈴木さんと、十時にお約束があります。", "ja", {"host_name": "鈴木", "purpose": "10時のお約束"}),
        ("十四時に佐藤さんとアポがあります", "ja", {"host_name": "佐藤", "purpose": "14時のお約束"}),
        ("10時半にお約束です", "ja", {"purpose": "10時30分のお約束"}),
        ("I have an appointment with Mr. Sato at two o'clock", "en", {"purpose": "appointment at 14:00"}),
        ("I have an appointment at 2 pm", "en", {"purpose": "appointment at 14:00"}),
        ("My appointment is at 10:30 with Ms. Suzuki", "en", {"purpose": "appointment at 10:30"}),
        ("I have an appointment with Mr. Sato about the contract", "en", {"purpose": "contract"}),
    ],
)
def test_an_appointment_statement_becomes_its_time(rules, text, language, expected):
    result = rules.understand(text, language)
    for key, value in expected.items():
        assert getattr(result, key) == value, (key, result)


@pytest.mark.parametrize(
    ("text", "language", "expecting"),
    [
        ("お願いします", "ja", "visitor_name"),
        ("お願いします", "ja", "company_name"),
        ("はい、お願いします。", "ja", "company_name"),
        ("はい、そうです", "ja", "company_name"),
        ("そうです", "ja", "visitor_name"),
        ("よろしくお願いします", "ja", "visitor_name"),
        ("よろしくお願いします", "ja", ""),
        ("please", "en", "company_name"),
        ("thank you", "en", "visitor_name"),
        ("yes please", "en", "company_name"),
        ("that's right", "en", "visitor_name"),
    ],
)
def test_polite_answers_are_never_names_or_companies(rules, text, language, expecting):
    result = rules.understand(text, language, expecting)
    assert (result.visitor_name, result.company_name, result.host_name) == ("", "", ""), result


def test_a_heard_string_may_be_read_as_the_expected_one():
    assert reads_as("作ら星期", "さくらせいき")
    assert reads_as("仲村", "なかむら")
    assert not reads_as("充実", "なかむら")


def _reconciled(language: str = "ja", state: dict | None = None, **heard) -> Understanding:
    return reconcile(Understanding(**heard), state or {}, language, STAFF, APPOINTMENTS)


def test_a_company_heard_is_the_expected_one_with_the_same_reading():
    assert _reconciled(company_name="株式会社作ら星期").company_name == "株式会社さくら精機"
    assert _reconciled(company_name="株式会社テスト").company_name == "株式会社テスト"
    assert _reconciled(company_name="株式会社知らない").company_name == "株式会社知らない"


def test_names_heard_are_the_expected_visitor_and_staff_with_the_same_reading():
    assert _reconciled(visitor_name="仲村").visitor_name == "中村"
    assert _reconciled(visitor_name="山田太郎").visitor_name == "山田太郎"
    assert _reconciled(host_name="仲村").host_name == "中村"
    assert _reconciled(host_name="すずき").host_name == "鈴木"
    assert _reconciled("en", visitor_name="Jane Doe").visitor_name == "Jane Doe"


@pytest.mark.parametrize(
    ("heard", "company", "stored"),
    [
        ("ヤマトロー", "株式会社テスト", "山田太郎"),  # what Whisper made of 山田太郎 spoken fast
        ("ヤマだったろう", "株式会社テスト", "山田太郎"),
        ("山田", "株式会社テスト", "山田"),  # part of the expected name, heard right: kept as said
        ("イヤマトタロー", "株式会社テスト", "イヤマトタロー"),  # another first sound: not taken for theirs
        ("山本", "株式会社テスト", "山本"),  # too unlike
        ("山田次郎", "株式会社テスト", "山田次郎"),  # a name written out (a correction): recognition heard a name
        ("ヤマトロー", "株式会社知らない", "ヤマトロー"),  # nobody expected from that company
    ],
)
def test_a_name_misheard_from_an_expected_company_is_its_expected_visitors(heard, company, stored):
    assert _reconciled(visitor_name=heard, company_name=company).visitor_name == stored
    said_before = _reconciled(state={"company_name": company}, visitor_name=heard)  # the company said earlier
    assert said_before.visitor_name == stored


def test_a_reading_shared_by_two_candidates_keeps_what_was_heard():
    staff = [*STAFF, Person(4, "中邑 優", "なかむら ゆう", "Yu Nakamura", "開発部")]
    result = reconcile(Understanding(host_name="仲村"), {}, "ja", staff, APPOINTMENTS)
    assert result.host_name == "仲村"


def test_a_time_not_understood_takes_the_visitors_own_appointment_else_the_hosts_one():
    expected = _reconciled(visitor_name="山田", company_name="株式会社テスト", host_name="鈴木", purpose="充実にお約束")
    assert expected.purpose == "14時のお約束"  # 山田's, though 鈴木 (misheard?) expects someone at 10
    said_before = _reconciled(state={"company_name": "株式会社テスト"}, host_name="鈴木", purpose="充実にお約束")
    assert said_before.purpose == "14時のお約束"
    assert _reconciled(host_name="鈴木", purpose="充実にお約束").purpose == "10時のお約束"
    assert _reconciled(host_name="鈴木", purpose="従事にも約束").purpose == "10時のお約束"  # お heard as も
    later = _reconciled(state={"host_name": "鈴木"}, purpose="充実にお約束")
    assert later.purpose == "10時のお約束"
    assert _reconciled("en", host_name="Suzuki", purpose="appointment").purpose == "appointment at 10:00"
    # 佐藤 has two appointments today: nothing to choose from.
    assert _reconciled(host_name="佐藤", purpose="充実にお約束").purpose == "充実にお約束"
    assert _reconciled(host_name="鈴木", purpose="打ち合わせ").purpose == "打ち合わせ"
    assert _reconciled(host_name="鈴木", purpose="会議室の予約について").purpose == "会議室の予約について"


def test_polite_words_given_as_fields_are_dropped():
    result = _reconciled(company_name="お願いします", visitor_name="はい、そうです", purpose="打ち合わせ")
    assert (result.company_name, result.visitor_name, result.purpose) == ("", "", "打ち合わせ")
    assert _reconciled("en", company_name="Yes please").company_name == ""


def test_the_time_said_picks_the_appointment_when_the_visitor_has_several():
    morning = _appointment(20, "山田 太郎", "株式会社テスト", 3, 10)
    afternoon = _appointment(21, "山田 太郎", "株式会社テスト", 3, 15)
    both = [morning, afternoon]
    assert find_appointment("山田太郎", "", {3}, both, "15時のお約束") == afternoon
    assert find_appointment("Taro Yamada", "", {3}, both, "appointment at 10:00") == morning


@pytest.mark.django_db
def test_the_misheard_visitor_story_completes(workflow, kiosk, directory):
    Appointment.objects.create(
        visitor_name="中村 一",
        visitor_company="株式会社さくら精機",
        host=directory["tanaka_hanako"],
        start=_today_at(10),
        end=_today_at(11),
        location="会議室C",
    )
    workflow.start("misheard", "ja", kiosk.pk)
    heard = workflow.handle_text("misheard", "株式会社作ら星期の仲村です。田中花子さんと、充実にお約束があります。")
    assert heard.visit["company_name"] == "株式会社さくら精機"
    assert heard.visit["visitor_name"] == "中村"
    assert heard.visit["purpose"] == "10時のお約束"
    assert "「10時のお約束」" in heard.reply
    done = workflow.handle_text("misheard", "はい、お願いします。")
    assert done.finished and done.visit["status"] == Visit.Status.HOST_NOTIFIED
    visit = Visit.objects.get(session_id="misheard")
    assert visit.appointment_found and visit.company_name == "株式会社さくら精機"


@pytest.mark.django_db
def test_a_corrected_host_brings_the_time_of_their_appointment(workflow, kiosk):
    """The host and the time misheard (佐藤, 「充実」): the time is the visitor's own appointment's, not that of
    the host heard; once the visitor names the right host, the visit stores the appointment found."""
    workflow.start("host-corrected", "ja", kiosk.pk)
    heard = workflow.handle_text("host-corrected", "株式会社テストの山田太郎です。佐藤さんと充実にお約束があります。")
    assert heard.visit["purpose"] == "10時のお約束"  # 山田's with 田中, not John Smith's at 14:00 with 佐藤
    unknown = workflow.handle_text("visitor-unknown", "株式会社ナゾの山川です。佐藤さんと充実にお約束があります。")
    assert unknown.visit["purpose"] == "14時のお約束"  # nobody expects this visitor: the host's one appointment
    workflow.handle_text("host-corrected", "いいえ、佐藤さんではなく田中一郎さんです。")
    done = workflow.handle_text("host-corrected", "はい、お願いします。")
    assert done.finished and done.visit["status"] == Visit.Status.HOST_NOTIFIED
    visit = Visit.objects.select_related("host").get(session_id="host-corrected")
    assert visit.appointment_found and visit.host.name == "田中 一郎" and visit.purpose == "10時のお約束"


@pytest.mark.django_db
def test_please_is_no_company_on_the_tool_call_path(workflow, kiosk):
    workflow.start("polite", "ja", kiosk.pk)
    result = workflow.handle_tool_call("polite", "collect_visitor_info", {"company_name": "お願いします"})
    assert result.turn.visit["company_name"] == ""


@pytest.mark.django_db
def test_todays_visitors_and_companies_join_the_staff_in_the_recognition_vocabulary(appointments):
    japanese = recognition_vocabulary("ja")
    assert {"田中一郎", "佐藤健", "山田太郎", "株式会社テスト", "John Smith", "Acme Corp"} <= set(japanese)
    assert "受付" not in japanese and "中村一" not in japanese  # the desk; yesterday's visitor
    english = recognition_vocabulary("en")
    assert {"Ichiro Tanaka", "Ken Sato", "John Smith", "Acme Corp"} <= set(english)
    assert "山田 太郎" not in english and "Reception" not in english
    appointments["smith"].start -= timedelta(days=2)
    appointments["smith"].end -= timedelta(days=2)
    appointments["smith"].save()
    assert "John Smith" not in recognition_vocabulary("en")


TANAKAS = [
    Person(11, "田中 一郎", "たなか いちろう", "Ichiro Tanaka", "営業部"),
    Person(12, "田中 美咲", "たなか みさき", "Misaki Tanaka", "人事部"),
]
EXPECTING = [
    _appointment(21, "John Smith", "Acme Corp", 11, 14),
    _appointment(22, "山田 太郎", "株式会社テスト", 12, 10),
]


@pytest.mark.parametrize(
    ("language", "state", "heard", "stored"),
    [
        ("en", {"visitor_name": "John Smith", "company_name": "Acme Corp"}, "Tanaka", "Ichiro Tanaka"),
        ("en", {"company_name": "Acme Corp"}, "the Kiro Tanaka", "Ichiro Tanaka"),  # Whisper's "Ichiro Tanaka"
        ("ja", {"visitor_name": "山田"}, "田中", "田中美咲"),  # part of the expected visitor's name
        ("ja", {}, "田中", "田中"),  # nobody known yet: which 田中 is not guessed
        ("ja", {"company_name": "サンプル商事"}, "田中", "田中"),  # not expected by either
        ("en", {"visitor_name": "John Smith"}, "Misaki Tanaka", "Misaki Tanaka"),  # one named: as said
    ],
)
def test_a_host_name_several_staff_share_is_the_one_expecting_this_visitor(language, state, heard, stored):
    heard_host = Understanding(host_name=heard)
    assert reconcile(heard_host, state, language, TANAKAS, EXPECTING).host_name == stored


def test_a_lone_delivery_word_at_the_read_back_changes_no_visit(workflow, kiosk, directory):
    """「はい、お願いします」 in loud noise came out as 「お届け物。」 and made the visitor a delivery."""
    workflow.start("not-a-parcel", "ja", kiosk.pk)
    read_back = workflow.handle_text("not-a-parcel", "株式会社テストの山田太郎です。佐藤さんと十時にお約束があります。")
    assert read_back.visit["status"] == Visit.Status.CONFIRMING
    misheard = workflow.handle_text("not-a-parcel", "お届け物。")
    assert misheard.visit == read_back.visit  # asked again, nothing changed
    assert "「はい」" in misheard.reply
    said_so = workflow.handle_text("not-a-parcel", "いいえ、お届け物です。")
    assert said_so.visit["visitor_type"] == Visit.VisitorType.DELIVERY


def test_a_lone_delivery_word_from_a_visitor_with_an_appointment_is_asked_again(workflow, kiosk, directory):
    """「はい」 in loud noise came out as 「お届け物。」 while the kiosk asked whom the visitor came to see; a courier
    who names their company is still a delivery."""
    workflow.start("expected-visitor", "ja", kiosk.pk)
    asked = workflow.handle_text("expected-visitor", "株式会社テストの山田太郎です。十時にお約束があります。")
    assert asked.visit["visitor_type"] == Visit.VisitorType.APPOINTMENT
    misheard = workflow.handle_text("expected-visitor", "お届け物。")
    assert misheard.visit == asked.visit
    assert misheard.visit["status"] == Visit.Status.COLLECTING
    reported = workflow.handle_tool_call("expected-visitor", "report_delivery", {"needs_signature": False})
    assert reported.turn.visit == asked.visit  # the Realtime model's reading of the same words
    courier = workflow.handle_text("expected-visitor", "ヤマト運輸です。お届け物です。")
    assert courier.visit["visitor_type"] == Visit.VisitorType.DELIVERY


@pytest.mark.parametrize(
    ("heard", "company", "visitor"),
    [
        ("山東郵", "ヤマト運輸", ""),  # ヤマト運輸 in loud noise, taken for a name
        ("佐藤救便", "佐川急便", ""),
        ("西農運輸", "西濃運輸", ""),
        ("山田", "", "山田"),  # a courier who gives their own name: no carrier is guessed
    ],
)
def test_a_delivery_names_the_carrier_its_name_heard_sounds_like(heard, company, visitor):
    delivery = Understanding(visitor_name=heard, visitor_type=Visit.VisitorType.DELIVERY, purpose="お届け物")
    reconciled = reconcile(delivery, {}, "ja", STAFF, APPOINTMENTS)
    assert (reconciled.company_name, reconciled.visitor_name) == (company, visitor)
    reported = replace(delivery, visitor_name="", company_name=heard)  # the model's report_delivery
    assert reconcile(reported, {}, "ja", STAFF, APPOINTMENTS).company_name == (company or heard)
    assert reconcile(replace(delivery, visitor_type=""), {}, "ja", STAFF, APPOINTMENTS).company_name == ""


def test_a_half_misheard_name_finds_the_one_appointment_its_company_host_and_time_name():
    yamada = APPOINTMENTS[1]  # 山田 太郎 of 株式会社テスト with host 3 at 14:00
    assert find_appointment("山田専骨", "株式会社テスト", {3}, APPOINTMENTS, "14時のお約束") == yamada
    assert find_appointment("山本", "株式会社テスト", {3}, APPOINTMENTS, "14時のお約束") is None  # another name
    assert find_appointment("山田専骨", "株式会社テスト", {3}, APPOINTMENTS, "15時のお約束") is None  # another time
    assert find_appointment("山田専骨", "株式会社テスト", {1}, APPOINTMENTS, "14時のお約束") is None  # another host
    assert find_appointment("山田専骨", "サンプル商事", {3}, APPOINTMENTS, "14時のお約束") is None  # another company
    assert find_appointment("山田専骨", "株式会社テスト", {3}, APPOINTMENTS, "打ち合わせ") is None  # no time said
    twice = [*APPOINTMENTS, _appointment(13, "山田 花子", "株式会社テスト", 3, 14)]
    assert find_appointment("山田専骨", "株式会社テスト", {3}, twice, "14時のお約束") is None  # which of two


def test_a_san_written_as_the_digit_3_after_a_name_is_read_as_san(rules):
    heard = rules.understand("株式会社テストの山田太郎です。佐藤健3にご挨拶に伺いました。", "ja")
    assert heard.host_name.replace(" ", "") == "佐藤健"
    assert parse_time("3時にお約束があります") == (15, 0)  # a 3 before 時 is a time


@pytest.mark.django_db
def test_a_name_said_after_the_kiosk_asks_for_everything_again_is_the_visitors_name(workflow, kiosk):
    """A correction not understood makes the kiosk ask for every detail again; the name said next is a name, not the
    company (the first detail asked): 「ヤマトサローです」 was stored as the company on the spoken corpus."""
    workflow.start("all-again", "ja", kiosk.pk)
    workflow.handle_text("all-again", "株式会社テストの山田太郎です。田中さんと十時にお約束があります。")
    workflow.handle_text("all-again", "いいえ。")
    again = workflow.handle_text("all-again", "ええと。")
    assert again.visit["company_name"] == "株式会社テスト" and "会社名" in again.reply
    heard = workflow.handle_text("all-again", "ヤマカワです。")
    assert heard.visit["visitor_name"] == "ヤマカワ"
    assert heard.visit["company_name"] == "株式会社テスト"


def test_at_a_correction_the_host_said_no_to_and_heard_again_is_the_visitors_own_host():
    sakura = {"visitor_name": "中村", "company_name": "株式会社さくら精機", "host_name": "佐藤"}
    assert _reconciled(state={**sakura, "correcting": True}, host_name="佐藤").host_name == "鈴木美咲"
    assert _reconciled(state=sakura, host_name="佐藤", answer=False).host_name == "鈴木美咲"  # 「いいえ、佐藤さんと…」
    assert _reconciled(state=sakura, host_name="佐藤").host_name == "佐藤"  # no correction: as heard
    assert _reconciled(state={**sakura, "correcting": True}, host_name="中村").host_name == "中村"  # another one
    stranger = {**sakura, "visitor_name": "山川", "company_name": "株式会社ナゾ", "correcting": True}
    assert _reconciled(state=stranger, host_name="佐藤").host_name == "佐藤"  # no appointment to go by
    globex = {"visitor_name": "Jane Doe", "company_name": "Globex", "host_name": "Suzuki", "correcting": True}
    assert _reconciled("en", state=globex, host_name="Suzuki").host_name == "Ken Sato"


@pytest.mark.django_db
def test_a_host_misheard_twice_is_read_back_as_the_visitors_own(workflow, kiosk):
    """Lobby noise made 鈴木 「佐藤」 in the first line and in the correction: the read-back names 山田's host."""
    workflow.start("misheard-twice", "ja", kiosk.pk)
    first = workflow.handle_text("misheard-twice", "株式会社テストの山田太郎です。佐藤さんと十時にお約束があります。")
    assert "佐藤" in first.reply
    workflow.handle_text("misheard-twice", "いいえ。")
    again = workflow.handle_text("misheard-twice", "佐藤さんと十時のお約束です。")
    assert "田中" in again.reply and "佐藤" not in again.reply
    done = workflow.handle_text("misheard-twice", "はい。")
    assert done.finished and done.visit["status"] == Visit.Status.HOST_NOTIFIED
    assert Visit.objects.select_related("host").get(session_id="misheard-twice").host.name == "田中 一郎"


@pytest.mark.django_db
def test_a_host_reported_again_at_the_read_back_by_the_model_is_read_back_as_the_visitors_own(workflow, kiosk):
    """On Realtime the model reports 「いいえ。佐藤さんと十時のお約束です」 as the details alone: a correction all the
    same, so the host said no to and heard again is the visitor's own appointment's host."""
    workflow.start("tool-misheard", "ja", kiosk.pk)
    heard = {"company_name": "株式会社テスト", "visitor_name": "山田太郎", "host_name": "佐藤"}
    heard["purpose"] = "10時のお約束"
    first = workflow.handle_tool_call("tool-misheard", "collect_visitor_info", heard)
    assert "佐藤" in first.turn.reply
    again = workflow.handle_tool_call("tool-misheard", "collect_visitor_info", {"host_name": "佐藤"})
    assert "田中" in again.turn.reply and "佐藤" not in again.turn.reply
