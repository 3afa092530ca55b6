"""Text normalisation and error rates for the speech tests and benchmarks (no dependencies)."""

from __future__ import annotations

import re
import unicodedata

_KANJI_DIGITS = "〇一二三四五六七八九"
_EN_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def int_to_kanji(n: int) -> str:
    if n == 0:
        return "〇"
    out = ""
    for value, unit in ((1000, "千"), (100, "百"), (10, "十")):
        q, n = divmod(n, value)
        if q:
            out += ("" if q == 1 else _KANJI_DIGITS[q]) + unit
    return out + (_KANJI_DIGITS[n] if n else "")


def int_to_english(n: int) -> str:
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _EN_TENS[t] + (f" {_EN_ONES[o]}" if o else "")
    h, r = divmod(n, 100)
    return f"{_EN_ONES[h]} hundred" + (f" {int_to_english(r)}" if r else "")


def normalize_ja(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\d+", lambda m: int_to_kanji(int(m.group())) if len(m.group()) < 5 else m.group(), text)
    return "".join(ch for ch in text if not (unicodedata.category(ch)[0] in "PZS" or ch.isspace()))


_EN_SUBS = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "i'm": "i am",
    "it's": "it is",
    "i've": "i have",
    "you're": "you are",
    "we're": "we are",
    "don't": "do not",
    "where's": "where is",
    "what's": "what is",
    "that's": "that is",
    "there's": "there is",
}


def normalize_en(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = re.sub(r"(\d+):00", r"\1", text)
    text = re.sub(r"\d+", lambda m: int_to_english(int(m.group())) if len(m.group()) < 4 else m.group(), text)
    words = []
    for w in re.findall(r"[a-z0-9']+", text):
        w = w.strip("'")
        words.extend(_EN_SUBS.get(w, w).replace("'", "").split())
    return words


def edit_distance(a, b) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def cer_ja(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize_ja(reference), normalize_ja(hypothesis)
    return edit_distance(ref, hyp) / max(len(ref), 1)


def wer_en(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize_en(reference), normalize_en(hypothesis)
    return edit_distance(ref, hyp) / max(len(ref), 1)


JA_SENTENCES = [
    "こんにちは、山田太郎です。鈴木さんと十時に約束があります。",
    "いらっしゃいませ。ご用件をお伺いします。",
    "会議室は三階にございます。",
    "少々お待ちください。担当者がすぐに参ります。",
    "お名前と会社名を教えてください。",
]
EN_SENTENCES = [
    "My name is Taro Yamada from Test Corporation and I have an appointment with Mister Suzuki.",
    "Good morning, I am here to see Mister Tanaka at ten o'clock.",
    "Please wait in the lobby, someone will come to meet you shortly.",
    "Where is the meeting room on the third floor?",
    "Thank you for visiting, please sign in at the reception desk.",
]
STAFF_PROMPT_JA = "受付です。山田太郎、鈴木一郎、田中花子。お約束、お届け物。"
STAFF_PROMPT_EN = "Reception. Staff: Ichiro Suzuki, Hanako Tanaka, Taro Yamada."
