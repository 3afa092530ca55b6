"""Tolerant name matching against the staff directory and today's appointments.

A name said at the kiosk may be kanji (田中), kana (たなか, タナカ), romaji in either order
(Tanaka Ichiro, Ichiro Tanaka), carry an honorific (田中さん, Ms. Tanaka, Tanaka-san), be only the
surname, be full- or half-width, or have a small speech-recognition typo (Tanka). Everything here is
a pure function over plain dataclasses except the two loaders at the bottom.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import jaconv
import pykakasi
from rapidfuzz import fuzz

# Honorifics removed before matching: Japanese suffixes and English titles.
_JA_SUFFIXES = ("さん", "さま", "様", "氏", "殿", "くん", "君", "ちゃん", "先生", "サン", "サマ")
_EN_TITLE = re.compile(r"^(?:mr|mrs|ms|miss|dr|prof)\.?\s+", re.IGNORECASE)
_EN_SUFFIX = re.compile(r"[\s-]+(?:san|sama|sensei|kun)$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s・･,、.]+")

EXACT = 100.0
PARTIAL = 92.0
FUZZY_THRESHOLD = 82.0
# Two candidates closer than this are indistinguishable: the visitor must say which one.
AMBIGUITY_MARGIN = 3.0


@dataclass(frozen=True)
class Person:
    """A matchable person: a staff member or an appointment's visitor."""

    id: int
    name: str
    reading: str = ""
    romaji: str = ""
    department: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Match:
    """The outcome of matching one spoken name: best candidates (highest score first)."""

    candidates: tuple[Person, ...] = ()
    score: float = 0.0

    @property
    def found(self) -> bool:
        """Someone matched."""
        return bool(self.candidates)

    @property
    def ambiguous(self) -> bool:
        """Several people matched equally well (ask which one)."""
        return len(self.candidates) > 1

    @property
    def person(self) -> Person | None:
        """The single match, or None when nothing or several matched."""
        return self.candidates[0] if len(self.candidates) == 1 else None


@lru_cache(maxsize=1)
def _kakasi() -> pykakasi.kakasi:
    return pykakasi.kakasi()


def strip_honorifics(text: str) -> str:
    """The name without honorifics: 田中さん → 田中, Ms. Tanaka → Tanaka, Tanaka-san → Tanaka."""
    name = unicodedata.normalize("NFKC", text).strip()
    previous = None
    while name != previous:
        previous = name
        name = _EN_SUFFIX.sub("", _EN_TITLE.sub("", name)).strip()
        for suffix in _JA_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)].rstrip()
    return name.strip()


def _romaji_token(token: str) -> str:
    """Lower-case romaji with long vowels folded, so tarou, taro and tarō compare equal."""
    token = unicodedata.normalize("NFKD", token.lower())
    token = "".join(ch for ch in token if ch.isascii() and ch.isalpha())
    for long, short in (("ou", "o"), ("oo", "o"), ("uu", "u"), ("oh", "o")):
        token = token.replace(long, short)
    return token


def _to_hiragana(text: str) -> str:
    return jaconv.kata2hira(text)


def _romaji_of(text: str) -> str:
    return "".join(part["hepburn"] for part in _kakasi().convert(text))


def name_keys(text: str) -> tuple[str, ...]:
    """The tokens of a name in every comparable script: as written, hiragana and folded romaji."""
    name = strip_honorifics(text)
    tokens = [tok for tok in _SEPARATORS.split(name) if tok]
    keys: list[str] = []
    for tok in tokens:
        if tok.isascii():
            keys.append(_romaji_token(tok))
        else:
            keys.extend({tok, _to_hiragana(tok), _romaji_token(_romaji_of(tok))})
    return tuple(k for k in keys if k)


def _forms(person: Person) -> tuple[set[str], set[str], str]:
    """All token keys of a person, their full-name keys (no spaces) and the folded romaji name."""
    tokens: set[str] = set()
    fulls: set[str] = set()
    for source in (person.name, person.reading, person.romaji):
        if not source:
            continue
        keys = name_keys(source)
        tokens.update(keys)
        name = strip_honorifics(source)
        joined = _SEPARATORS.sub("", name)
        fulls.update({joined, _to_hiragana(joined), _romaji_token(_romaji_of(joined))})
        if name.isascii():
            parts = [_romaji_token(p) for p in _SEPARATORS.split(name) if p]
            fulls.update({"".join(parts), "".join(reversed(parts))})
    romaji = " ".join(
        sorted(_romaji_token(_romaji_of(t)) for t in _SEPARATORS.split(person.romaji or person.name) if t)
    )
    return tokens, {f for f in fulls if f}, romaji


def score(query: str, person: Person) -> float:
    """How well a spoken name fits a person, 0–100 (exact full name 100, one name part 92, typos below)."""
    name = strip_honorifics(query)
    if not name:
        return 0.0
    tokens, fulls, romaji = _forms(person)
    joined = _SEPARATORS.sub("", name)
    query_fulls = {joined, _to_hiragana(joined), _romaji_token(_romaji_of(joined))}
    parts = [_romaji_token(p) for p in _SEPARATORS.split(name) if p] if name.isascii() else []
    if parts:
        query_fulls.update({"".join(parts), "".join(reversed(parts))})
    if query_fulls & fulls:
        return EXACT
    query_parts = [p for p in _SEPARATORS.split(name) if p]
    if query_parts and all(set(name_keys(part)) & tokens for part in query_parts):
        return PARTIAL
    if not any(fulls) or len(joined) < 2:
        return 0.0
    # Typos: compare in romaji, token by token and as a whole, order-insensitive.
    query_romaji = " ".join(sorted(_romaji_token(_romaji_of(t)) for t in _SEPARATORS.split(name) if t))
    best_token = max(
        (fuzz.ratio(q, t) for q in query_romaji.split() for t in tokens if t.isascii() and len(t) > 2), default=0.0
    )
    whole = fuzz.token_sort_ratio(query_romaji, romaji)
    # A typo never beats a correct partial name.
    best = min(max(whole, best_token * 0.95), PARTIAL - 1)
    return best if best >= FUZZY_THRESHOLD else 0.0


def _department_fits(hint: str, department: str) -> bool:
    hint_n = unicodedata.normalize("NFKC", hint).lower().strip().removesuffix("部").removesuffix(" department")
    dept_n = unicodedata.normalize("NFKC", department).lower().strip()
    return bool(hint_n) and (hint_n in dept_n or fuzz.partial_ratio(hint_n, dept_n) >= 85)


def match_name(query: str, people: list[Person], department: str = "") -> Match:
    """The people a spoken name refers to; several when they tie (two 田中 → ambiguous).

    A department hint (営業部, Sales) narrows the candidates when it fits any of them.
    """
    scored = [(score(query, p), p) for p in people]
    scored = [(s, p) for s, p in scored if s > 0]
    if department:
        narrowed = [(s, p) for s, p in scored if _department_fits(department, p.department)]
        scored = narrowed or scored
    if not scored:
        return Match()
    top = max(s for s, _ in scored)
    best = tuple(p for s, p in sorted(scored, key=lambda sp: -sp[0]) if top - s < AMBIGUITY_MARGIN)
    return Match(candidates=best, score=top)


def department_words(department: str) -> set[str]:
    """The words a visitor may use for a department: 営業部 (Sales) → 営業部, 営業, sales."""
    words = {w.lower() for w in re.split(r"[\s()（）/・,、]+", unicodedata.normalize("NFKC", department)) if w}
    return {w for w in words | {w.removesuffix("部") for w in words} if len(w) >= 2}


def choose_by_department(answer: str, candidates: list[Person]) -> Person | None:
    """The one candidate whose department (or full name) the visitor's answer names, else None."""
    text = unicodedata.normalize("NFKC", answer).lower()
    fitting = [p for p in candidates if any(w in text for w in department_words(p.department))]
    if len(fitting) == 1:
        return fitting[0]
    by_name = match_name(answer, candidates)
    return by_name.person if by_name.score == EXACT else None


def find_in_text(text: str, people: list[Person]) -> list[Person]:
    """People whose surname or full name (any script) occurs in free text: the host gazetteer."""
    norm = unicodedata.normalize("NFKC", text)
    hira = _to_hiragana(norm)
    lower = norm.lower()
    found = []
    for person in people:
        for source in (person.name, person.reading, person.romaji):
            tokens = [t for t in _SEPARATORS.split(strip_honorifics(source)) if len(t) >= 2]
            if any(
                (t in norm or _to_hiragana(t) in hira)
                if not t.isascii()
                else re.search(rf"\b{re.escape(t.lower())}\b", lower)
                for t in tokens
            ):
                found.append(person)
                break
    return found


def staff_directory() -> list[Person]:
    """Every staff member as a Person (reads the database); desk flags and presence go in `extra`."""
    from reception.models import StaffMember

    return [
        Person(
            id=s.pk,
            name=s.name,
            reading=s.reading,
            romaji=s.romaji,
            department=s.department,
            extra={"is_present": s.is_present, "is_reception_desk": s.is_reception_desk},
        )
        for s in StaffMember.objects.all()
    ]


def todays_appointments() -> list[Person]:
    """Today's (local date) appointments as Persons named after the visitor (reads the database)."""
    from django.utils import timezone

    from reception.models import Appointment

    today = timezone.localdate()
    rows = Appointment.objects.select_related("host").filter(start__date__lte=today, end__date__gte=today)
    return [
        Person(
            id=a.pk,
            name=a.visitor_name,
            department=a.visitor_company,
            extra={"host_id": a.host_id, "location": a.location, "start": a.start},
        )
        for a in rows
    ]
