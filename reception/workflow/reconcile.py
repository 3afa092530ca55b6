"""What was heard, reconciled with what the reception expects today: the staff directory and today's appointments.

Speech recognition mishears names it has never seen: 株式会社さくら精機 as 「株式会社作ら星期」, 中村 as 仲村, and
times: 「十時」 as 「充実」. A visitor's name or company heard is replaced by an expected visitor's when it may be read
the same and exactly one of them reads so; a host's name likewise with the staff, and a host's name that fits several
(two 田中, "the Kiro Tanaka") is the one this visitor has an appointment with today; an appointment stated without a
time understood takes the time of the visitor's one appointment today, else of the named host's; at a correction, the
host just said no to and heard again is the host of the visitor's one appointment today; a delivery's carrier
heard as a name (佐藤救便) is the carrier it sounds like. Polite words never fill a field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from difflib import SequenceMatcher
from functools import lru_cache

from .names import (
    JA_CARRIERS,
    Person,
    company_key,
    match_name,
    reading_of,
    reads_as,
    staff_directory,
    todays_appointments,
)
from .state import ReceptionState
from .times import APPOINTMENT_STATEMENT, appointment_at, appointment_purpose, starts_at
from .understanding import Understanding, is_polite_only

_PARTS = re.compile(r"[\s\u3000・]+")
_KANJI_ONLY = re.compile(r"[\u4e00-\u9fff々]+")  # a name heard as one: recognition wrote a name, not sounds
SOUNDS_ALIKE = 0.6  # difflib ratio of two readings above which a misheard name is taken for the expected one
CARRIER_ALIKE = 0.5  # the same for a carrier's name: only ever heard from a delivery, and only a few to tell apart
# An appointment and nothing else, its time perhaps misheard: 「充実にお約束」, 「従事にも約束」 (お heard as も),
# "my appointment".
_ONLY_AN_APPOINTMENT = re.compile(
    r"^(?:[^、。\s]{0,6}?[にのと])?[おも]?(?:約束|アポイント|アポ|予約)$|^(?:(?:an?|my|the)\s+)?(?:\S+\s+)?appointment$",
    re.I,
)


@lru_cache(maxsize=4096)
def _forms(name: str, reading: str = "") -> tuple[tuple[str, frozenset[str]], ...]:
    """A name as written (whole, and each part of a full name) with the readings each may have."""
    parts = [p for p in _PARTS.split(name) if p]
    readings = [r for r in _PARTS.split(reading) if r]
    forms = [("".join(parts), frozenset({reading_of(name), "".join(readings)} - {""}))]
    if len(parts) > 1:
        for k, part in enumerate(parts):
            said = {reading_of(part)} | ({readings[k]} if len(readings) == len(parts) else set())
            forms.append((part, frozenset(said)))
    return tuple(forms)


def _by_reading(heard: str, forms: Sequence[tuple[str, frozenset[str]]]) -> str:
    """The one expected writing that `heard` may be read as; `heard` itself when it is expected, or none or
    several fit."""
    plain = _PARTS.sub("", heard)
    if not plain or plain.isascii() or any(plain == written for written, _ in forms):
        return heard
    fitting = {written for written, readings in forms if any(reads_as(plain, r) for r in readings)}
    return fitting.pop() if len(fitting) == 1 else heard


def _sound(name: str) -> str:
    """A name's reading as compared by ear: hiragana, without long-vowel marks and the う that lengthens a vowel
    (たろう, たろー and たろ sound alike)."""
    return re.sub(r"[ーう]", "", reading_of(name))


def _expected_from(heard: str, company: str, appointments: Sequence[Person]) -> str:
    """The visitor expected today from `company` (exactly one), when the name heard sounds like theirs: the same
    first sound and most of the rest (ヤマトロー, ヤマだったろう for 山田 太郎); else `heard`."""
    key = company_key(company)
    theirs = [a for a in appointments if key and company_key(a.department) == key]
    spelled = _PARTS.sub("", heard)
    if (
        len(theirs) != 1
        or heard.isascii()
        or _KANJI_ONLY.fullmatch(spelled)
        or spelled in _PARTS.sub("", theirs[0].name)
    ):
        return heard  # another's name written out (山田 次郎, a correction), or part of theirs heard right (山田)
    said, expected = _sound(heard), _sound(theirs[0].name)
    alike = said[:1] == expected[:1] and SequenceMatcher(None, said, expected).ratio() >= SOUNDS_ALIKE
    return _PARTS.sub("", theirs[0].name) if alike else heard


def _company(heard: str, appointments: Sequence[Person]) -> str:
    """The expected company (an appointment's) that the company heard reads as, if exactly one does."""
    key = company_key(heard)
    expected = {a.department for a in appointments if a.department}
    if not key or key.isascii() or any(company_key(c) == key for c in expected):
        return heard
    fitting = {c for c in expected if reads_as(key, reading_of(company_key(c)))}
    return fitting.pop() if len(fitting) == 1 else heard


def _their_host(
    heard: str, visitor: str, company: str, language: str, staff: Sequence[Person], appointments: Sequence[Person]
) -> str:
    """The staff member `heard` names, when it fits several and exactly one of them expects this visitor (by name
    or company) today: written in full (in Latin letters for English); else `heard`."""
    fitting = {p.id: p for p in match_name(heard, staff).candidates}
    if len(fitting) < 2 or not (visitor or company):
        return heard
    name, key = _PARTS.sub("", visitor), company_key(company)
    hosts = {
        a.extra.get("host_id")
        for a in appointments
        if a.extra.get("host_id") in fitting
        and ((name and name in _PARTS.sub("", a.name)) or (key and company_key(a.department) == key))
    }
    if len(hosts) != 1:
        return heard
    return _written(fitting[hosts.pop()], language)


@lru_cache(maxsize=1)
def _carrier_readings() -> tuple[tuple[str, str], ...]:
    return tuple((carrier, reading_of(carrier)) for carrier in JA_CARRIERS)


def _carrier(heard: str) -> str:
    """The carrier a delivery's name heard sounds most like (佐藤救便 → 佐川急便, 山東郵 → ヤマト運輸), if one does."""
    said = reading_of(heard)
    alike = sorted((SequenceMatcher(None, said, reading).ratio(), c) for c, reading in _carrier_readings())
    (second, _), (best, carrier) = alike[-2:]
    return carrier if best >= CARRIER_ALIKE and best > second else ""


def _visitors_appointment(visitor: str, company: str, appointments: Sequence[Person]) -> Person | None:
    """The one appointment today of this visitor, known by name (in full or a part) and company where both are
    known; None when none or several fit."""
    name, key = _PARTS.sub("", visitor), company_key(company)
    if not (name or key):
        return None
    theirs = [
        a
        for a in appointments
        if (not name or name in _PARTS.sub("", a.name)) and (not key or company_key(a.department) == key)
    ]
    return theirs[0] if len(theirs) == 1 else None


def _host_said_no_to(
    heard: str,
    u: Understanding,
    state: ReceptionState,
    visit: tuple[str, str],
    language: str,
    staff: Sequence[Person],
    appointments: Sequence[Person],
) -> str:
    """At a correction, the host the visitor has just said no to, heard again (in lobby noise Whisper heard 鈴木 as
    佐藤 each time): the host of the visitor's one appointment today (`visit`: their name and company) when that is
    someone else, to be read back for them to confirm; else `heard`."""
    rejected = state.get("host_name") or ""
    if not (rejected and (state.get("correcting") or u.answer is False or u.is_correction)):
        return heard
    again = {p.id for p in match_name(heard, staff).candidates} & {p.id for p in match_name(rejected, staff).candidates}
    theirs = _visitors_appointment(*visit, appointments) if again else None
    if theirs is None or theirs.extra.get("host_id") in again:
        return heard
    host = next((p for p in staff if p.id == theirs.extra.get("host_id")), None)
    return heard if host is None else _written(host, language)


def _written(host: Person, language: str) -> str:
    """A staff member's name as the visit stores it: in full, in Latin letters for English."""
    return host.romaji if language == "en" and host.romaji else _PARTS.sub("", host.name)


def _purpose(
    purpose: str,
    host_name: str,
    visit: tuple[str, str],
    language: str,
    staff: Sequence[Person],
    appointments: Sequence[Person],
) -> str:
    """An appointment stated at a time → 「10時のお約束」; stated without a time understood (「充実にお約束」) → the
    time of the visitor's one appointment today (`visit`: their name and company), else of the host's one; anything
    else as said. The visitor's own comes first: a host's name is misheard more often than a name and a company
    together."""
    if not APPOINTMENT_STATEMENT.search(purpose):
        return purpose
    timed = appointment_purpose(purpose, language)
    if timed or not _ONLY_AN_APPOINTMENT.match(purpose):
        return timed or purpose
    theirs = _visitors_appointment(*visit, appointments)
    if theirs is None and host_name:
        hosts = {p.id for p in match_name(host_name, staff).candidates}
        expecting = [a for a in appointments if a.extra.get("host_id") in hosts]
        theirs = expecting[0] if len(expecting) == 1 else None
    if theirs is None:
        return purpose
    return appointment_at(*starts_at(theirs), language)


def reconcile(
    u: Understanding, state: ReceptionState, language: str, staff: Sequence[Person], appointments: Sequence[Person]
) -> Understanding:
    """`u` with polite words dropped and names, company and appointment time reconciled with what is expected."""
    u = replace(u)
    for name in ("visitor_name", "company_name", "host_name", "purpose"):
        if is_polite_only(getattr(u, name)):
            setattr(u, name, "")
    if u.visitor_type == "delivery" and language == "ja":  # the carrier heard as a name, or heard wrong
        heard = u.company_name or u.visitor_name
        carrier = _carrier(heard) if heard and heard not in JA_CARRIERS else ""
        u.company_name = carrier or u.company_name
        u.visitor_name = "" if carrier else u.visitor_name
    elif u.company_name:
        u.company_name = _company(u.company_name, appointments)
    company = u.company_name or state.get("company_name") or ""  # said now, else earlier
    if u.visitor_name:
        u.visitor_name = _by_reading(u.visitor_name, [f for a in appointments for f in _forms(a.name)])
        u.visitor_name = _expected_from(u.visitor_name, company, appointments)
    visitor = u.visitor_name or state.get("visitor_name") or ""
    if u.host_name:
        u.host_name = _by_reading(u.host_name, [f for p in staff for f in _forms(p.name, p.reading)])
        u.host_name = _their_host(u.host_name, visitor, company, language, staff, appointments)
        u.host_name = _host_said_no_to(u.host_name, u, state, (visitor, company), language, staff, appointments)
    if u.purpose:
        host = u.host_name or state.get("host_name") or ""
        u.purpose = _purpose(u.purpose, host, (visitor, company), language, staff, appointments)
    return u


def reconcile_with_today(u: Understanding, state: ReceptionState, language: str) -> Understanding:
    """`reconcile` against the staff directory (without the desk) and today's appointments, from the database."""
    if not u.found():
        return u
    staff = [p for p in staff_directory() if not p.extra.get("is_reception_desk")]
    return reconcile(u, state, language, staff, todays_appointments())
