"""Where a reception ends: today's appointment or the named host found, the host or the desk told, the visitor
told where to wait; and the Visit row that every turn writes from the state.

The nodes here (check, choose_host, notify, to_desk, delivery) run after the details are collected; `graph`
wires them with the conversation's nodes.
"""

from __future__ import annotations

import re

from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from langgraph.types import Command

from reception.models import StaffMember, Visit
from reception.notifications import notify_in_background

from .names import Person, choose_by_department, company_key, match_name, staff_directory, todays_appointments
from .prompts import place, say
from .state import STEP_CHOOSE_HOST, STEP_DONE, ReceptionState
from .times import APPOINTMENT_STATEMENT, parse_time, spoken_time, starts_at
from .understanding import EXPECT_HOST_CHOICE, Understanding

# Asking "which 田中?" more than twice helps nobody: the desk sorts it out.
MAX_HOST_CHOICE_TRIES = 2


def language_of(state: ReceptionState) -> str:
    """The visitor's language, Japanese until known."""
    return state.get("language") or "ja"


def understood(state: ReceptionState) -> Understanding:
    """This turn's reading of the visitor's input."""
    return Understanding(**(state.get("understood") or {}))


def ask(update: dict, reply: str, step: str, expecting: str, status: str = Visit.Status.COLLECTING) -> Command:
    """Reply and wait for the visitor at `step`, expecting `expecting` (a field or an answer)."""
    return Command(
        goto="project", update={**update, "reply": reply, "step": step, "expecting": expecting, "status": status}
    )


def asked_again(state: ReceptionState) -> dict:
    """The update that counts one more question asked again after an unclear answer."""
    return {"reask_count": state.get("reask_count", 0) + 1}


def _finish(update: dict, reply: str, status: str) -> Command:
    """End the reception; `guidance` keeps the closing words, to say again if the visitor speaks on."""
    return Command(
        goto="project",
        update={**update, "reply": reply, "guidance": reply, "status": status, "step": STEP_DONE, "finished": True},
    )


def _cut(field: str, value: str | None) -> str:
    """The value cut to the Visit column's length."""
    return (value or "")[: Visit._meta.get_field(field).max_length]


def save_visit(state: ReceptionState) -> int:
    """Write the Visit row for this session from the state (the admin's live view); returns its id.

    One UPDATE on every turn after the first; the row is created (again, if a purge took it) otherwise.
    """
    now = timezone.now()
    values = {
        "kiosk_id": state.get("kiosk_id"),
        "language": _cut("language", language_of(state)),
        "visitor_name": _cut("visitor_name", state.get("visitor_name")),
        "company_name": _cut("company_name", state.get("company_name")),
        "purpose": _cut("purpose", state.get("purpose")),
        "host_name": _cut("host_name", state.get("host_name")),
        "host_id": state.get("host_id"),
        "visitor_type": state.get("visitor_type") or Visit.VisitorType.UNKNOWN,
        "status": state.get("status") or Visit.Status.COLLECTING,
        "appointment_id": state.get("appointment_id"),
        "appointment_found": bool(state.get("appointment_found")),
        "host_notified": bool(state.get("host_notified")),
    }
    if state.get("finished"):
        values["completed_at"] = Coalesce("completed_at", Value(now))
    rows = Visit.objects.filter(session_id=state["session_id"])
    if state.get("visit_id") and rows.filter(pk=state["visit_id"]).update(**values, updated_at=now):
        return state["visit_id"]
    created = {k: (now if k == "completed_at" else v) for k, v in values.items()}
    visit, new = Visit.objects.get_or_create(session_id=state["session_id"], defaults=created)
    if not new:
        rows.update(**values, updated_at=now)
    return visit.pk


def _saved_visit(state: ReceptionState) -> Visit:
    """The Visit written from the state, with what a notification names (kiosk, appointment, host)."""
    return Visit.objects.select_related("kiosk", "appointment", "host").get(pk=save_visit(state))


def _kiosk_place(visit: Visit) -> str:
    """Where the kiosk stands, as the visitor is told to wait there."""
    return place(visit.kiosk.location if visit.kiosk else "", visit.language)


def _host_label(host: StaffMember, language: str) -> str:
    """The host's name as said to the visitor: written name in Japanese, romaji in English when known."""
    if language == "ja" or not host.romaji:
        return host.name.replace(" ", "").replace("\u3000", "")
    return host.romaji


def _named_by_the_rest(
    visitor_name: str, company_name: str, host_ids: set[int], time: tuple[int, int], appointments: list[Person]
) -> list[Person]:
    """The one appointment with this company, host and time whose visitor's family or given name was heard."""
    key, heard = company_key(company_name), re.sub(r"\s", "", visitor_name)
    if not key:
        return []
    fitting = [
        a
        for a in appointments
        if a.extra.get("host_id") in host_ids
        and starts_at(a) == time
        and company_key(a.department) == key
        and any(len(part) > 1 and part in heard for part in a.name.split())
    ]
    return fitting if len(fitting) == 1 else []


def find_appointment(
    visitor_name: str, company_name: str, host_ids: set[int], appointments: list[Person], purpose: str = ""
) -> Person | None:
    """Today's appointment of this visitor: tolerant name match, narrowed by host, the time said in the purpose
    (「10時のお約束」), company, then the time nearest now. A name heard half wrong (高橋誠 as 「高橋専骨」) still
    finds the one appointment its company, host and time all name; another name (a correction to 山本) does not."""
    if not visitor_name or not appointments:
        return None
    time = parse_time(purpose)
    candidates = list(match_name(visitor_name, appointments).candidates)
    if host_ids:
        candidates = [a for a in candidates if a.extra.get("host_id") in host_ids]
    if not candidates and company_name and host_ids and time:
        candidates = _named_by_the_rest(visitor_name, company_name, host_ids, time, appointments)
    if len(candidates) > 1 and time:
        candidates = [a for a in candidates if starts_at(a) == time] or candidates
    if len(candidates) > 1 and company_name:
        key = company_key(company_name)
        same = [a for a in candidates if key and key in company_key(a.department)]
        candidates = same or candidates
    if not candidates:
        return None
    now = timezone.now()
    return min(candidates, key=lambda a: abs((a.extra["start"] - now).total_seconds()))


def check(state: ReceptionState) -> Command:
    """Today's appointment for this visitor, else the named host; route to notify, desk, decline or ask."""
    staff = [p for p in staff_directory() if not p.extra.get("is_reception_desk")]
    host_ids: set[int] = set()
    host_match = None
    if state.get("host_id"):
        host_ids = {state["host_id"]}
    elif state.get("host_name"):
        host_match = match_name(state["host_name"], staff, state.get("host_department", ""))
        host_ids = {p.id for p in host_match.candidates}
    appointment = find_appointment(
        state.get("visitor_name", ""),
        state.get("company_name", ""),
        host_ids,
        todays_appointments(),
        state.get("purpose", ""),
    )
    update: dict = {"unclear_count": 0}
    if appointment is not None:
        update.update(
            appointment_id=appointment.id,
            appointment_found=True,
            host_id=appointment.extra["host_id"],
            visitor_type=Visit.VisitorType.APPOINTMENT,
        )
        if APPOINTMENT_STATEMENT.search(state.get("purpose", "")):  # the time of the appointment found, not as heard
            language = language_of(state)
            update["purpose"] = say("appointment_at", language, time=spoken_time(*starts_at(appointment), language))
        return _to_host(StaffMember.objects.get(pk=appointment.extra["host_id"]), update)
    is_sales = state.get("visitor_type") == Visit.VisitorType.SALES
    update["visitor_type"] = Visit.VisitorType.SALES if is_sales else Visit.VisitorType.NO_APPOINTMENT
    update["appointment_found"] = False
    if not state.get("host_id") and not state.get("host_name"):
        if is_sales:
            return _finish(update, say("decline_sales", language_of(state)), Visit.Status.DECLINED)
        return Command(goto="to_desk", update={**update, "desk_reason": "no_host"})
    if host_match is not None and not host_match.found:
        return Command(goto="to_desk", update={**update, "desk_reason": "unknown_host"})
    if host_match is not None and host_match.ambiguous:
        candidates = list(host_match.candidates)
        update["host_candidates"] = [p.id for p in candidates]
        return ask(update, _host_choice_question(state, candidates), STEP_CHOOSE_HOST, EXPECT_HOST_CHOICE)
    host = StaffMember.objects.get(pk=state["host_id"] if state.get("host_id") else host_match.person.id)
    return _to_host(host, update)


def _to_host(host: StaffMember, update: dict) -> Command:
    """Notify the host, or hand the visitor to the desk when the host is away."""
    update["host_id"] = host.pk
    if not host.is_present:
        return Command(goto="to_desk", update={**update, "desk_reason": "absent_host"})
    return Command(goto="notify", update=update)


def _host_choice_question(state: ReceptionState, candidates: list[Person]) -> str:
    """Which of the same-named hosts: asked by their departments."""
    language = language_of(state)
    departments = [p.department or p.name for p in candidates]
    joined = "、".join(departments) if language == "ja" else ", ".join(departments[:-1]) + " or " + departments[-1]
    return say("ask_host_choice", language, host=state.get("host_name", ""), departments=joined)


def choose_host(state: ReceptionState) -> Command:
    """The visitor names the department (or full name) of one of several same-named hosts."""
    u = understood(state)
    candidates = [p for p in staff_directory() if p.id in set(state.get("host_candidates") or [])]
    answer = u.host_department or u.host_name
    chosen = choose_by_department(answer, candidates) if answer else None
    if chosen is None and u.host_name:
        chosen = match_name(u.host_name, candidates).person
    if chosen is not None:
        return Command(goto="check", update={"host_id": chosen.id, "host_department": chosen.department})
    unclear = state.get("unclear_count", 0) + 1
    if unclear >= MAX_HOST_CHOICE_TRIES:
        return Command(goto="to_desk", update={"unclear_count": unclear, "desk_reason": "ambiguous_host"})
    question = _host_choice_question(state, candidates)
    return ask({"unclear_count": unclear, **asked_again(state)}, question, STEP_CHOOSE_HOST, EXPECT_HOST_CHOICE)


def _host_notified_reply(state: ReceptionState, visit: Visit, label: str) -> str:
    """Tell the visitor the host is on the way: to the meeting room of the appointment, or to the kiosk."""
    language = language_of(state)
    name = state.get("visitor_name", "")
    if not state.get("appointment_found"):
        return say("host_notified_no_appointment", language, name=name, host=label, place=_kiosk_place(visit))
    location = visit.appointment.location if visit.appointment else ""
    room = say("room", language, location=location) if location else ""
    return say("host_notified_appointment", language, name=name, host=label, room=room, place=_kiosk_place(visit))


def notify(state: ReceptionState) -> Command:
    """Queue the host's notification and answer at once; a host with nowhere to send to means the desk, said
    honestly. (Should the host's delivery fail later, the background task tells the desk.)"""
    language = language_of(state)
    visit = _saved_visit(state)
    host = visit.host
    found = bool(state.get("appointment_found"))
    queued = notify_in_background(visit, host, "appointment" if found else "no_appointment")
    label = _host_label(host, language)
    if queued is not None and host is not None and queued.recipient_id == host.pk:
        return _finish({"host_notified": True}, _host_notified_reply(state, visit, label), Visit.Status.HOST_NOTIFIED)
    key = "host_unreachable" if queued is not None else "nobody_reachable"
    reply = say(key, language, host=label, place=_kiosk_place(visit))
    return _finish({"host_notified": False}, reply, Visit.Status.SENT_TO_DESK)


def to_desk(state: ReceptionState) -> Command:
    """Hand the visitor to the reception desk, saying why in the visitor's language."""
    language = language_of(state)
    reason = state.get("desk_reason") or "unclear"
    visit = _saved_visit(state)
    queued = notify_in_background(visit, None, reason)
    where = _kiosk_place(visit)
    if queued is None:
        return _finish({}, say("nobody_reachable", language), Visit.Status.SENT_TO_DESK)
    host = state.get("host_name", "")
    if reason == "absent_host" and state.get("host_id"):
        host = _host_label(visit.host, language)
    key = {"unknown_host": "desk_unknown_host", "absent_host": "desk_absent"}.get(reason, "desk_general")
    return _finish({}, say(key, language, host=host, place=where), Visit.Status.SENT_TO_DESK)


def delivery(state: ReceptionState) -> Command:
    """Deliveries skip confirmation: leave it at the desk, or ring when a signature is needed."""
    language = language_of(state)
    signature = bool(state.get("needs_signature"))
    update = {"visitor_type": Visit.VisitorType.DELIVERY}
    if not state.get("purpose"):
        update["purpose"] = say("delivery_purpose_signature" if signature else "delivery_purpose", language)
    visit = _saved_visit({**state, **update})
    queued = notify_in_background(visit, None, "delivery_signature" if signature else "delivery")
    if signature and queued is None:
        return _finish(update, say("nobody_reachable", language), Visit.Status.DELIVERY_GUIDED)
    return _finish(
        update, say("delivery_signature" if signature else "delivery", language), Visit.Status.DELIVERY_GUIDED
    )
