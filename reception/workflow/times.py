"""Clock times said by a visitor, in Japanese or English, words or digits; and the time read back.

「十時」, 「十四時」, 「10時半」, 「午後2時」, 「10:30」, "two o'clock", "2 pm", "half past ten" and "10:30" all
parse. A time said without morning or afternoon is taken in office hours: 1 to 7 o'clock are afternoon.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from django.utils import timezone

from .names import Person
from .prompts import say

# A sentence that states an appointment (not a meeting's topic): 「十時にお約束があります」, "appointment at 2 pm".
APPOINTMENT_STATEMENT = re.compile(r"約束|アポ|予約|appointment|scheduled|expecting me", re.I)

_KANJI_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_JA_NUMBER = r"(?:\d{1,2}|[〇零一二三四五六七八九十]{1,3})"
_JA_TIME = re.compile(
    rf"(?P<meridiem>午前|午後|朝の?|夕方の?|夜の?)?\s*(?P<hour>{_JA_NUMBER})\s*時(?!間)"
    rf"\s*(?:(?P<half>半)|(?P<minute>{_JA_NUMBER})\s*分)?"
)
_EN_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
_EN_MINUTE_WORDS = {"o five": 5, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "forty-five": 45}
_EN_HOUR = rf"(?P<hour>\d{{1,2}}|{'|'.join(_EN_WORDS)})"
_EN_MINUTE = (
    rf"(?::(?P<minute>\d\d)|[\s-]+(?P<minute_word>{'|'.join(sorted(_EN_MINUTE_WORDS, key=len, reverse=True))}))"
)
_EN_MERIDIEM = r"(?P<meridiem>a\.?m\.?|p\.?m\.?|o'?clock|in the morning|in the afternoon)"
_EN_TIME = re.compile(
    rf"\b(?:(?P<past>half|quarter)\s+past\s+)?{_EN_HOUR}{_EN_MINUTE}?(?:\s*{_EN_MERIDIEM}(?![a-z]))?", re.I
)
_EN_AT_HOUR = re.compile(rf"\bat\s+{_EN_HOUR}\b(?!\s*(?:minutes?|hours?|people|of)\b)", re.I)
_AFTERNOON = ("午後", "夕方", "夜", "pm", "in the afternoon")


def _ja_number(text: str) -> int:
    """「十四」 → 14, 「二十」 → 20, 「三十」 → 30, 「10」 → 10."""
    if text.isdigit():
        return int(text)
    if "十" not in text:
        return int("".join(str(_KANJI_DIGITS[ch]) for ch in text))
    tens, _, ones = text.partition("十")
    return (_KANJI_DIGITS[tens] if tens else 1) * 10 + (_KANJI_DIGITS[ones] if ones else 0)


def _on_the_clock(hour: int, minute: int, meridiem: str) -> tuple[int, int] | None:
    """(hour, minute) in 24 hours, or None when it is no time of day."""
    meridiem = meridiem.lower().replace(".", "").rstrip("の")
    if meridiem in _AFTERNOON and hour < 12:
        hour += 12
    elif not meridiem or "clock" in meridiem:
        hour += 12 if 1 <= hour <= 7 else 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return hour, minute


def _en_hour(word: str) -> int:
    return int(word) if word.isdigit() else _EN_WORDS.index(word.lower()) + 1


def parse_time(text: str) -> tuple[int, int] | None:
    """The first clock time said in `text`, as (hour, minute) in 24 hours; None when none is said."""
    text = unicodedata.normalize("NFKC", text)
    if match := _JA_TIME.search(text):
        minute = 30 if match["half"] else _ja_number(match["minute"]) if match["minute"] else 0
        return _on_the_clock(_ja_number(match["hour"]), minute, match["meridiem"] or "")
    for match in _EN_TIME.finditer(text):
        if not (match["past"] or match["minute"] or match["minute_word"] or match["meridiem"]):
            continue
        hour = _en_hour(match["hour"])
        if match["past"]:
            minute = 30 if match["past"].lower() == "half" else 15
        elif match["minute"]:
            minute = int(match["minute"])
        else:
            minute = _EN_MINUTE_WORDS.get((match["minute_word"] or "").lower(), 0)
        return _on_the_clock(hour, minute, match["meridiem"] or "")
    if match := _EN_AT_HOUR.search(text):
        return _on_the_clock(_en_hour(match["hour"]), 0, "")
    return None


def spoken_time(hour: int, minute: int, language: str) -> str:
    """The time as read back: 「10時」, 「14時30分」; "10:00", "14:30"."""
    if language == "ja":
        return f"{hour}時{minute}分" if minute else f"{hour}時"
    return f"{hour}:{minute:02d}"


def starts_at(appointment: Person) -> tuple[int, int]:
    """When an appointment (a Person from `todays_appointments`) starts, local (hour, minute)."""
    start: datetime = timezone.localtime(appointment.extra["start"])
    return start.hour, start.minute


def appointment_at(hour: int, minute: int, language: str) -> str:
    """The purpose of an appointment at a time: 「10時のお約束」 / "appointment at 10:00"."""
    return say("appointment_at", language, time=spoken_time(hour, minute, language))


def appointment_purpose(said: str, language: str) -> str:
    """`appointment_at` the time when a sentence of `said` states an appointment at a time; else ""."""
    for sentence in re.split(r"[。！？!?]", said):
        time = parse_time(sentence) if APPOINTMENT_STATEMENT.search(sentence) else None
        if time:
            return appointment_at(*time, language)
    return ""
