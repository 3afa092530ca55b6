"""Tolerant name matching: kanji, kana, romaji, honorifics, partial names, width, typos, ambiguity."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reception import workflow
from reception.models import StaffMember
from reception.workflow import names
from reception.workflow.chat import OpenAIChatUnderstanding
from reception.workflow.names import (
    Person,
    choose_by_department,
    department_words,
    find_in_text,
    match_name,
    name_forms,
    staff_directory,
    strip_honorifics,
)

STAFF = [
    Person(1, "田中 一郎", "たなか いちろう", "Ichiro Tanaka", "営業部 (Sales)"),
    Person(2, "田中 花子", "たなか はなこ", "Hanako Tanaka", "開発部 (Development)"),
    Person(3, "佐藤 健", "さとう けん", "Ken Sato", "総務部"),
    Person(4, "鈴木 美咲", "すずき みさき", "Misaki Suzuki", "人事部"),
    Person(5, "高橋 誠", "たかはし まこと", "Makoto Takahashi", "経理部"),
]
BY_ID = {p.id: p for p in STAFF}


@pytest.mark.parametrize(
    ("spoken", "expected_id"),
    [
        ("佐藤", 3),
        ("佐藤健", 3),
        ("佐藤 健", 3),
        ("佐藤　健", 3),  # full-width space
        ("さとう", 3),
        ("サトウ", 3),
        ("ｻﾄｳ", 3),  # half-width katakana
        ("Sato", 3),
        ("SATO", 3),
        ("Satou", 3),  # long vowel spelled out
        ("Satoh", 3),
        ("Ken Sato", 3),
        ("Sato Ken", 3),  # family name first
        ("Ｓａｔｏ", 3),  # full-width latin
        ("佐藤さん", 3),
        ("佐藤様", 3),
        ("佐藤さま", 3),
        ("佐藤氏", 3),
        ("佐藤殿", 3),
        ("佐藤くん", 3),
        ("Mr. Sato", 3),
        ("Dr Sato", 3),
        ("Sato-san", 3),
        ("たかはしさん", 5),
        ("Takahasi", 5),  # typo
        ("Takahshi", 5),  # typo
        ("Suzki", 4),  # typo
        ("Misaki Suzuky", 4),
        ("田中一郎", 1),
        ("Ichiro Tanaka", 1),
        ("Tanaka Ichiro", 1),
        ("たなか はなこ", 2),
        ("美咲", 4),  # given name only
    ],
)
def test_one_person_matches(spoken, expected_id):
    match = match_name(spoken, STAFF)
    assert match.person == BY_ID[expected_id], (spoken, match)
    assert not match.ambiguous


@pytest.mark.parametrize("spoken", ["田中", "田中さん", "たなか", "タナカ", "Tanaka", "Ms. Tanaka", "Tanaka-san"])
def test_two_tanakas_are_ambiguous(spoken):
    match = match_name(spoken, STAFF)
    assert match.ambiguous
    assert {p.id for p in match.candidates} == {1, 2}
    assert match.person is None


@pytest.mark.parametrize(("department", "expected_id"), [("営業部", 1), ("営業", 1), ("Sales", 1), ("開発部", 2)])
def test_department_hint_resolves_ambiguity(department, expected_id):
    assert match_name("田中", STAFF, department).person == BY_ID[expected_id]


@pytest.mark.parametrize("spoken", ["山田", "Yamada", "John", "", "さん", "Mr.", "X"])
def test_unknown_names_do_not_match(spoken):
    assert not match_name(spoken, STAFF).found


def test_typo_never_beats_an_exact_partial_match():
    people = [Person(1, "佐藤 健", "さとう けん", "Ken Sato"), Person(2, "加藤 健", "かとう けん", "Ken Kato")]
    assert match_name("Sato", people).person.id == 1
    assert match_name("加藤", people).person.id == 2


@pytest.mark.parametrize(
    ("answer", "expected_id"),
    [("開発部です", 2), ("営業の方です", 1), ("Sales, please", 1), ("the development one", 2), ("田中花子さん", 2)],
)
def test_choose_by_department_or_full_name(answer, expected_id):
    assert choose_by_department(answer, STAFF[:2]) == BY_ID[expected_id]


@pytest.mark.parametrize("answer", ["わかりません", "either", ""])
def test_choose_by_department_gives_up_when_unclear(answer):
    assert choose_by_department(answer, STAFF[:2]) is None


def test_department_words():
    assert department_words("営業部 (Sales)") == {"営業部", "営業", "sales"}


def test_find_in_text_is_the_host_gazetteer():
    assert find_in_text("営業部の田中さんと10時に", STAFF) == STAFF[:2]
    assert find_in_text("here to see Mr. Sato", STAFF) == [STAFF[2]]
    assert find_in_text("たかはしさんをお願いします", STAFF) == [STAFF[4]]
    assert find_in_text("I am here for a meeting", STAFF) == []


def test_find_in_text_reads_romaji_as_whole_words():
    assert find_in_text("Is Mr. Sato's office here?", STAFF) == [STAFF[2]]
    assert find_in_text("I'm Satoshi from Globex", STAFF) == []
    assert find_in_text("TAKAHASHI-san, please", STAFF) == [STAFF[4]]


@settings(max_examples=100, deadline=None)
@given(query=st.one_of(st.sampled_from(["田中", "たなか はなこ", "Tanka", "Mr. Sato", "すずき", "Makoto"]), st.text()))
def test_precomputed_forms_match_exactly_like_computed_ones(query):
    precomputed = [
        Person(p.id, p.name, p.reading, p.romaji, p.department, forms=name_forms(p.name, p.reading, p.romaji))
        for p in STAFF
    ]
    assert match_name(query, precomputed) == match_name(query, STAFF)


@pytest.mark.django_db
def test_staff_directory_is_reread_only_when_the_directory_changes(django_assert_num_queries):
    member = StaffMember.objects.create(name="山川 太郎", reading="やまかわ たろう", romaji="Taro Yamakawa")
    first = staff_directory()
    with django_assert_num_queries(1):  # the directory's version, nothing else
        assert staff_directory() is first
    member.name, member.reading, member.romaji = "川上 太郎", "かわかみ たろう", "Taro Kawakami"
    member.save()
    assert match_name("川上", staff_directory()).person.id == member.pk
    assert not match_name("山川", staff_directory()).found
    member.is_present = False
    member.save()
    assert staff_directory()[0].extra["is_present"] is False
    added = StaffMember.objects.create(name="森 花子", reading="もり はなこ")
    member.delete()
    assert [p.id for p in staff_directory()] == [added.pk]


@pytest.mark.django_db
def test_warm_up_loads_the_romaji_tables_and_the_staff_names_without_calling_a_paid_api(monkeypatch, settings):
    settings.OPENAI_API_KEY, settings.LEGACY_ENGINES = "sk-test", "openai"  # the chat model would be in use

    def no_call(*args, **kwargs):
        raise AssertionError("warm-up called the chat model")

    monkeypatch.setattr(OpenAIChatUnderstanding, "understand", no_call)
    monkeypatch.setattr(names, "_kakasi_instance", None)
    names._staff_forms.cache_clear()
    StaffMember.objects.create(name="山川 太郎", reading="やまかわ たろう", romaji="Taro Yamakawa")
    workflow.warm_up()
    assert names._kakasi_instance is not None
    assert names._staff_forms.cache_info().currsize == 1


def test_romaji_tables_load_once_when_many_threads_ask_at_once(monkeypatch):
    monkeypatch.setattr(names, "_kakasi_instance", None)
    with ThreadPoolExecutor(8) as pool:
        converters = list(pool.map(lambda _: names._kakasi(), range(8)))
    assert all(converter is converters[0] for converter in converters)


def test_appointments_match_across_scripts():
    appointments = [Person(10, "山田 太郎", department="株式会社テスト"), Person(11, "John Smith", department="Acme")]
    assert match_name("Taro Yamada", appointments).person.id == 10
    assert match_name("やまだ たろう", appointments).person.id == 10
    assert match_name("山田", appointments).person.id == 10
    assert match_name("Smith", appointments).person.id == 11
    assert match_name("Jon Smith", appointments).person.id == 11


HONORIFICS = st.sampled_from(["", "さん", "様", "さま", "氏", "殿", "くん"])
TITLES = st.sampled_from(["", "Mr. ", "Ms. ", "Mrs. ", "Dr. "])


@settings(max_examples=150, deadline=None)
@given(person=st.sampled_from(STAFF), suffix=HONORIFICS, title=TITLES, full=st.booleans())
def test_honorifics_never_change_the_match(person, suffix, title, full):
    kanji = person.name.replace(" ", "") if full else person.name.split()[0]
    romaji = person.romaji if full else person.romaji.split()[-1]
    plain_kanji, plain_romaji = match_name(kanji, STAFF), match_name(romaji, STAFF)
    assert match_name(kanji + suffix, STAFF) == plain_kanji
    assert match_name(title + romaji, STAFF) == plain_romaji
    assert person in plain_kanji.candidates and person in plain_romaji.candidates


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_strip_honorifics_is_idempotent_and_never_raises(text):
    once = strip_honorifics(text)
    assert strip_honorifics(once) == once
    match_name(text, STAFF)  # arbitrary input never raises
