"""Tolerant name matching against the staff directory and today's appointments.

A name said at the kiosk may be kanji (田中), kana (たなか, タナカ), romaji in either order
(Tanaka Ichiro, Ichiro Tanaka), carry an honorific (田中さん, Ms. Tanaka, Tanaka-san), be only the
surname, be full- or half-width, or have a small speech-recognition typo (Tanka). Everything here is
a pure function over plain dataclasses except the loaders at the bottom.

A lookup must stay cheap for a directory of hundreds: the staff directory and each staff name's forms are
cached per process (the directory under its version in the database); visitors' names are never cached.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import jaconv
import pykakasi
from pykakasi.kanji import Kanwa
from rapidfuzz import fuzz

# Honorifics removed before matching: Japanese suffixes and English titles.
_JA_SUFFIXES = ("さん", "さま", "様", "氏", "殿", "くん", "君", "ちゃん", "先生", "サン", "サマ")
EN_TITLE = r"(?:mr|mrs|ms|miss|dr|prof)\.?\s+"
_EN_TITLE_FIRST = re.compile(rf"^{EN_TITLE}", re.IGNORECASE)
_EN_SUFFIX = re.compile(r"[\s-]+(?:san|sama|sensei|kun)$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s・･,、.]+")
_WORD = re.compile(r"\w+")
# The legal form around a Japanese company name (株式会社テスト, テスト(株)), and with the English ones, what a
# company name is compared without.
JA_LEGAL_FORMS = r"株式会社|有限会社|合同会社|\(株\)|\(有\)"
_LEGAL_FORMS = re.compile(rf"{JA_LEGAL_FORMS}|inc\.?|corp\.?|co\.?,? ltd\.?|\s", re.IGNORECASE)

# The carriers a delivery most often comes from, as they call themselves at the door.
JA_CARRIERS = ("ヤマト運輸", "佐川急便", "日本郵便", "西濃運輸", "福山通運", "アマゾン")

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
    # Precomputed `name_forms` (the staff directory fills it from a per-process cache); None: computed on use.
    forms: NameForms | None = field(default=None, compare=False, hash=False, repr=False)


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


_kakasi_lock = threading.Lock()
_kakasi_instance: pykakasi.kakasi | None = None


def _kakasi() -> pykakasi.kakasi:
    """The shared converter; its dictionaries take about 0.5 s to load, so they load once per process."""
    global _kakasi_instance
    if _kakasi_instance is None:
        with _kakasi_lock:
            if _kakasi_instance is None:
                _kakasi_instance = pykakasi.kakasi()
    return _kakasi_instance


def strip_honorifics(text: str) -> str:
    """The name without honorifics: 田中さん → 田中, Ms. Tanaka → Tanaka, Tanaka-san → Tanaka."""
    name = unicodedata.normalize("NFKC", text).strip()
    previous = None
    while name != previous:
        previous = name
        name = _EN_SUFFIX.sub("", _EN_TITLE_FIRST.sub("", name)).strip()
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


def reading_of(text: str) -> str:
    """The usual reading of a written name in hiragana, without spaces: さくら精機 → さくらせいき."""
    return "".join(part["hira"] for part in _kakasi().convert(_SEPARATORS.sub("", text)))


@lru_cache(maxsize=256)
def _readings_at(written: str) -> tuple[tuple[tuple[int, str], ...], ...]:
    """For each position of `written`: every (length, hiragana) it may be read as, from the same kanji
    dictionary the romaji come from (作 → さく, つくる…; 星 → ほし, せい…); kana stand for themselves."""
    _kakasi()  # loads the dictionaries
    options = []
    for i, ch in enumerate(written):
        table = Kanwa().load(ch) if not ("\u3040" <= ch <= "\u30ff") else None
        found = {
            (len(word), yomi)
            for word, yomis in (table or {}).items()
            if written.startswith(word, i)
            for yomi, _ in yomis
        }
        options.append(tuple(found) or ((1, _to_hiragana(ch)),))
    return tuple(options)


def reads_as(written: str, reading: str) -> bool:
    """Whether `written` (kanji and kana, as heard) may be read `reading`: 作ら星期 may be read さくらせいき,
    仲村 なかむら."""
    written, target = _SEPARATORS.sub("", written), _to_hiragana(_SEPARATORS.sub("", reading))
    if not written or not target or written.isascii():
        return False
    options = _readings_at(written)
    reachable = {(0, 0)}  # (position in written, position in reading)
    for i in range(len(written)):
        for _, j in sorted(p for p in reachable if p[0] == i):
            reachable.update((i + n, j + len(yomi)) for n, yomi in options[i] if target.startswith(yomi, j))
    return (len(written), len(target)) in reachable


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


def _full_keys(name: str) -> set[str]:
    """A whole name without spaces, as written, in hiragana and in romaji (romaji names in either order)."""
    joined = _SEPARATORS.sub("", name)
    keys = {joined, _to_hiragana(joined), _romaji_token(_romaji_of(joined))}
    if name.isascii():
        parts = [_romaji_token(p) for p in _SEPARATORS.split(name) if p]
        keys.update({"".join(parts), "".join(reversed(parts))})
    return keys


def _folded_romaji(name: str) -> str:
    """The name's words in folded romaji, sorted: word order does not matter to the typo comparison."""
    return " ".join(sorted(_romaji_token(_romaji_of(t)) for t in _SEPARATORS.split(name) if t))


@dataclass(frozen=True)
class NameForms:
    """A person's name in every comparable shape: token keys, full-name keys (no spaces), folded romaji."""

    tokens: frozenset[str]
    fulls: frozenset[str]
    romaji: str
    # For finding the name in free text: parts of two or more characters, (as written, hiragana) and ASCII words.
    written_parts: tuple[tuple[str, str], ...]
    ascii_words: tuple[str, ...]


def name_forms(name: str, reading: str = "", romaji: str = "") -> NameForms:
    """The comparable forms of a person's name, reading and romaji (kanji→kana→romaji conversions)."""
    tokens: set[str] = set()
    fulls: set[str] = set()
    written: list[tuple[str, str]] = []
    ascii_words: list[str] = []
    for source in (name, reading, romaji):
        if not source:
            continue
        tokens.update(name_keys(source))
        plain = strip_honorifics(source)
        fulls.update(_full_keys(plain))
        for part in _SEPARATORS.split(plain):
            if len(part) >= 2 and part.isascii():
                ascii_words.append(part.lower())
            elif len(part) >= 2:
                written.append((part, _to_hiragana(part)))
    return NameForms(
        frozenset(tokens),
        frozenset(f for f in fulls if f),
        _folded_romaji(romaji or name),
        tuple(written),
        tuple(ascii_words),
    )


# Staff names only (never visitors'): keyed by the strings, so a renamed staff member simply gets new forms.
_staff_forms = lru_cache(maxsize=4096)(name_forms)


@dataclass(frozen=True)
class _SpokenName:
    """The forms of one spoken name, computed once per match rather than once per person."""

    name: str
    joined: str
    fulls: frozenset[str]
    part_keys: tuple[frozenset[str], ...]
    romaji: str

    @classmethod
    def of(cls, query: str) -> _SpokenName:
        name = strip_honorifics(query)
        words = [w for w in _SEPARATORS.split(name) if w]
        part_keys = tuple(frozenset(name_keys(w)) for w in words)
        return cls(name, _SEPARATORS.sub("", name), frozenset(_full_keys(name)), part_keys, _folded_romaji(name))


def _score(spoken: _SpokenName, person: Person) -> float:
    """How well a spoken name fits a person, 0–100 (exact full name 100, one name part 92, typos below)."""
    if not spoken.name:
        return 0.0
    forms = person.forms or name_forms(person.name, person.reading, person.romaji)
    if spoken.fulls & forms.fulls:
        return EXACT
    if spoken.part_keys and all(keys & forms.tokens for keys in spoken.part_keys):
        return PARTIAL
    if not forms.fulls or len(spoken.joined) < 2:
        return 0.0
    # Typos: compare in romaji, token by token and as a whole, order-insensitive.
    best_token = max(
        (fuzz.ratio(q, t) for q in spoken.romaji.split() for t in forms.tokens if t.isascii() and len(t) > 2),
        default=0.0,
    )
    whole = fuzz.token_sort_ratio(spoken.romaji, forms.romaji)
    # A typo never beats a correct partial name.
    best = min(max(whole, best_token * 0.95), PARTIAL - 1)
    return best if best >= FUZZY_THRESHOLD else 0.0


def _department_fits(hint: str, department: str) -> bool:
    hint_n = unicodedata.normalize("NFKC", hint).lower().strip().removesuffix("部").removesuffix(" department")
    dept_n = unicodedata.normalize("NFKC", department).lower().strip()
    return bool(hint_n) and (hint_n in dept_n or fuzz.partial_ratio(hint_n, dept_n) >= 85)


def match_name(query: str, people: Sequence[Person], department: str = "") -> Match:
    """The people a spoken name refers to; several when they tie (two 田中 → ambiguous).

    A department hint (営業部, Sales) narrows the candidates when it fits any of them.
    """
    spoken = _SpokenName.of(query)
    scored = [(_score(spoken, p), p) for p in people]
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


def choose_by_department(answer: str, candidates: Sequence[Person]) -> Person | None:
    """The one candidate whose department (or full name) the visitor's answer names, else None."""
    text = unicodedata.normalize("NFKC", answer).lower()
    fitting = [p for p in candidates if any(w in text for w in department_words(p.department))]
    if len(fitting) == 1:
        return fitting[0]
    by_name = match_name(answer, candidates)
    return by_name.person if by_name.score == EXACT else None


def company_key(company: str) -> str:
    """A company name as compared: without legal forms and spaces, lower-case (株式会社テスト → テスト)."""
    return _LEGAL_FORMS.sub("", company).lower()


def find_in_text(text: str, people: Sequence[Person]) -> list[Person]:
    """People whose surname or full name (any script) occurs in free text: the host gazetteer."""
    norm = unicodedata.normalize("NFKC", text)
    hira = _to_hiragana(norm)
    lower = norm.lower()
    words = set(_WORD.findall(lower))

    def says(word: str) -> bool:  # as a whole word, like \bword\b
        return word in words if _WORD.fullmatch(word) else bool(re.search(rf"\b{re.escape(word)}\b", lower))

    found = []
    for person in people:
        forms = person.forms or name_forms(person.name, person.reading, person.romaji)
        if any(t in norm or t_hira in hira for t, t_hira in forms.written_parts) or any(
            says(w) for w in forms.ascii_words
        ):
            found.append(person)
    return found


_directory_cache: tuple[tuple, tuple[Person, ...]] = ((), ())


def staff_directory() -> tuple[Person, ...]:
    """Every staff member as a Person (desk flags and presence in `extra`), from the shared database.

    Cached per process under the directory's version (row count, newest id and newest change), which one
    aggregate query reads: every process sees an edit in the admin or an import at its next lookup.
    """
    global _directory_cache
    from django.db.models import Count, Max

    from reception.models import StaffMember

    version = tuple(StaffMember.objects.aggregate(Count("id"), Max("id"), Max("updated_at")).values())
    cached_version, people = _directory_cache
    if version == cached_version:
        return people
    people = tuple(
        Person(
            id=s.pk,
            name=s.name,
            reading=s.reading,
            romaji=s.romaji,
            department=s.department,
            extra={"is_present": s.is_present, "is_reception_desk": s.is_reception_desk},
            forms=_staff_forms(s.name, s.reading, s.romaji),
        )
        for s in StaffMember.objects.all()
    )
    _directory_cache = (version, people)  # one atomic swap: readers see the old or the new directory
    return people


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


# The words a speech-recognition prompt may carry: the first 40 staff, then today's visitors and their companies.
RECOGNITION_STAFF = 40
RECOGNITION_WORDS = 60


def recognition_vocabulary(language: str) -> list[str]:
    """The names recognition must get right: staff (not the desk), today's expected visitors and their companies.

    Japanese: names as written, without spaces (adding kana readings made Whisper write visitors' names in
    katakana). English: the staff's romaji and the visitors' names and companies written in Latin letters.
    """
    staff = [p for p in staff_directory() if not p.extra.get("is_reception_desk")][:RECOGNITION_STAFF]
    expected = todays_appointments()
    if language == "ja":
        words = [p.name for p in staff] + [a.name for a in expected] + [a.department for a in expected]
    else:
        words = [p.romaji for p in staff] + [w for a in expected for w in (a.name, a.department) if w.isascii()]
    unique = dict.fromkeys(w if w.isascii() else _SEPARATORS.sub("", w) for w in words if w)
    return list(unique)[:RECOGNITION_WORDS]


HINT_TTL_SECONDS = 60.0
_hint_cache: dict[str, tuple[float, str]] = {}


def recognition_hint(language: str) -> str:
    """A short speech-recognition prompt of `recognition_vocabulary`, kept for a minute (reads the database)."""
    cached = _hint_cache.get(language)
    if cached and time.monotonic() - cached[0] < HINT_TTL_SECONDS:
        return cached[1]
    words = recognition_vocabulary(language)
    if language == "ja":
        # The carriers and a delivery's words, outside the vocabulary's limit: without them, on the spoken corpus
        # 佐川急便 was heard as 「佐藤健」 (a host), ヤマト運輸 as 「山東入」, 受領印 as 「重量シルシ」.
        # はい、いいえ before the visit words: ending on お届け物 alone made いいえ 「いいね」 or 「お届け」.
        carriers = "、".join(JA_CARRIERS)
        hint = f"受付です。{'、'.join(words)}、{carriers}。はい、いいえ、お約束、お届け物、宅配便、受領印、サイン。"
    else:
        hint = "Reception. " + ", ".join(words) + ". Appointment, delivery."
    _hint_cache[language] = (time.monotonic(), hint)
    return hint
