"""The reception conversation as a LangGraph `StateGraph`.

greet → collect (company, name, purpose, host) → confirm → check today's appointments → notify the host →
tell the visitor where to wait, with the short paths of a real lobby: deliveries (no confirmation, the desk
is told), visits without appointment, sales without a host (declined), unknown/absent/ambiguous hosts and
repeated unclear input (the desk), corrections at any point (at most MAX_CORRECTIONS, then proceed).

One visitor turn is one invocation: the entry routes on the persisted `step`, the nodes run until a reply
needs the visitor again, and every run ends in `project`, which writes the Visit row and records the reply.
Text and structured tool-call fields enter through the same `interpret` node.
"""

from __future__ import annotations

import re
from dataclasses import asdict

from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from reception.models import StaffMember, Visit
from reception.notifications import notify_with_fallback

from .names import Person, choose_by_department, match_name, staff_directory, todays_appointments
from .prompts import field_list, place, say
from .state import ReceptionState
from .understanding import (
    EXPECT_CONFIRMATION,
    EXPECT_HOST_CHOICE,
    FIELDS,
    LanguageUnderstanding,
    Understanding,
    get_understanding,
)

MAX_CORRECTIONS = 3
MAX_UNCLEAR = 3
# Asking "which 田中?" more than twice helps nobody: the desk sorts it out.
MAX_HOST_CHOICE_TRIES = 2
COLLECT_ORDER = ("company_name", "visitor_name", "purpose", "host_name")

STEP_COLLECT = "collect"
STEP_CONFIRM = "confirm"
STEP_CHOOSE_HOST = "choose_host"
STEP_DONE = "done"


def missing_fields(state: ReceptionState) -> list[str]:
    """The visitor fields still needed, in asking order (a sales visitor need not name a host)."""
    needed = [f for f in COLLECT_ORDER if not (state.get(f) or "").strip()]
    if state.get("visitor_type") == Visit.VisitorType.SALES and "host_name" in needed:
        needed.remove("host_name")
    return needed


def _lang(state: ReceptionState) -> str:
    return state.get("language") or "ja"


def _understood(state: ReceptionState) -> Understanding:
    return Understanding(**(state.get("understood") or {}))


def _changes(state: ReceptionState, u: Understanding) -> dict[str, str]:
    """Fields whose value this turn gives or changes; a changed host forgets the previously matched one."""
    changed: dict = {k: v for k, v in u.found().items() if v != (state.get(k) or "")}
    if "host_name" in changed:
        changed.update(host_id=None, host_candidates=[], host_department=u.host_department)
    elif u.host_department and state.get("step") != STEP_CHOOSE_HOST:
        changed["host_department"] = u.host_department
    return changed


def _is_correction(state: ReceptionState, u: Understanding, changed: dict) -> bool:
    """A turn corrects when it replaces a value already given (or says so while giving one)."""
    replaced = any(state.get(k) for k in changed if k in FIELDS)
    return replaced or (u.is_correction and any(k in FIELDS for k in changed))


def _kiosk_place(visit: Visit) -> str:
    return place(visit.kiosk.location if visit.kiosk else "", visit.language)


def _host_label(host: StaffMember, language: str) -> str:
    if language == "ja" or not host.romaji:
        return host.name.replace(" ", "").replace("\u3000", "")
    return host.romaji


def save_visit(state: ReceptionState) -> int:
    """Write the Visit row for this session from the state (the admin's live view); returns its id.

    One UPDATE on every turn after the first; the row is created (again, if a purge took it) otherwise.
    """

    def cut(field: str, value: str | None) -> str:
        return (value or "")[: Visit._meta.get_field(field).max_length]

    now = timezone.now()
    values = {
        "kiosk_id": state.get("kiosk_id"),
        "language": cut("language", _lang(state)),
        "visitor_name": cut("visitor_name", state.get("visitor_name")),
        "company_name": cut("company_name", state.get("company_name")),
        "purpose": cut("purpose", state.get("purpose")),
        "host_name": cut("host_name", state.get("host_name")),
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


def _finish(update: dict, reply: str, status: str) -> Command:
    """End the reception; `guidance` keeps the closing words, to say again if the visitor speaks on."""
    return Command(
        goto="project",
        update={**update, "reply": reply, "guidance": reply, "status": status, "step": STEP_DONE, "finished": True},
    )


def _ask(update: dict, reply: str, step: str, expecting: str, status: str = Visit.Status.COLLECTING) -> Command:
    return Command(
        goto="project", update={**update, "reply": reply, "step": step, "expecting": expecting, "status": status}
    )


def build_graph(understanding: LanguageUnderstanding | None = None) -> StateGraph:
    """The uncompiled graph; `understanding` defaults to `get_understanding()` at each turn."""

    def route_entry(state: ReceptionState) -> str:
        step = state.get("step") or ""
        if step == STEP_DONE:
            return "finished"
        if not step and not state.get("input"):
            return "greet"
        return "interpret"

    def greet(state: ReceptionState) -> Command:
        return _ask(
            {"visitor_type": Visit.VisitorType.UNKNOWN, "correction_count": 0, "unclear_count": 0},
            say("greeting", _lang(state)),
            STEP_COLLECT,
            "",
        )

    def interpret(state: ReceptionState) -> Command:
        """Read this turn's input (utterance or tool-call fields) into an Understanding."""
        given = state.get("input") or {}
        kind = given.get("kind")
        if kind == "text":
            reader = understanding or get_understanding()
            u = reader.understand(given.get("text", ""), _lang(state), state.get("expecting", ""))
            said = given.get("text", "")
        elif kind == "fields":
            u = Understanding(**{k: str(v).strip() for k, v in given.get("fields", {}).items() if k in FIELDS and v})
            said = "[collect_visitor_info] " + ", ".join(f"{k}={v}" for k, v in u.found().items())
        elif kind == "confirm":
            u = Understanding(answer=bool(given.get("confirmed")))
            said = f"[confirm_visitor_info] confirmed={u.answer}"
        elif kind == "delivery":
            signature = bool(given.get("needs_signature"))
            u = Understanding(
                visitor_type=Visit.VisitorType.DELIVERY,
                needs_signature=signature,
                company_name=str(given.get("company_name") or "").strip(),
                purpose=say("delivery_purpose_signature" if signature else "delivery_purpose", _lang(state)),
            )
            said = f"[report_delivery] needs_signature={signature}"
        else:  # host_choice
            u = Understanding(host_department=str(given.get("department") or "").strip())
            said = f"[choose_host] {u.host_department}"
        step = state.get("step") or STEP_COLLECT
        goto = {STEP_CONFIRM: "confirm", STEP_CHOOSE_HOST: "choose_host"}.get(step, "collect")
        return Command(
            goto=goto,
            update={"understood": asdict(u), "input": {}, "messages": [{"role": "visitor", "text": said}]},
        )

    def collect(state: ReceptionState) -> Command:
        """Merge what was said; go to delivery, confirmation, or ask for what is missing."""
        u = _understood(state)
        language = _lang(state)
        update: dict = _changes(state, u)
        if u.visitor_type and (
            u.visitor_type == Visit.VisitorType.DELIVERY or state.get("visitor_type") in ("", None, "unknown")
        ):
            update["visitor_type"] = u.visitor_type
        if u.needs_signature:
            update["needs_signature"] = True
        counted = _is_correction(state, u, update) and not state.get("correcting")
        corrections = state.get("correction_count", 0) + (1 if counted else 0)
        update["correction_count"] = corrections
        if any(k in FIELDS for k in update):
            update["correcting"] = False
        merged: ReceptionState = {**state, **update}
        if merged.get("visitor_type") == Visit.VisitorType.DELIVERY:
            return Command(goto="delivery", update=update)
        missing = missing_fields(merged)
        progress = any(k in FIELDS for k in update) or "visitor_type" in update
        if not progress:
            unclear = state.get("unclear_count", 0) + 1
            if unclear >= MAX_UNCLEAR:
                return Command(goto="to_desk", update={**update, "unclear_count": unclear, "desk_reason": "unclear"})
            wanted = missing or list(COLLECT_ORDER)
            reply = say("ask_unclear", language, fields=field_list(wanted, language))
            return _ask({**update, "unclear_count": unclear}, reply, STEP_COLLECT, wanted[0])
        update["unclear_count"] = 0
        if not missing:
            return Command(goto="check" if corrections >= MAX_CORRECTIONS else "ask_confirm", update=update)
        reply = say("ask_missing", language, fields=field_list(missing, language))
        # The first field named in the question is the one a bare answer ("Globex.", 「テストです」) fills.
        return _ask(update, reply, STEP_COLLECT, missing[0])

    def ask_confirm(state: ReceptionState) -> Command:
        language = _lang(state)
        host = say("confirm_host", language, host=state["host_name"]) if state.get("host_name") else ""
        reply = say(
            "confirm",
            language,
            company=state.get("company_name", ""),
            name=state.get("visitor_name", ""),
            host=host,
            purpose=state.get("purpose", ""),
        )
        return _ask({"unclear_count": 0}, reply, STEP_CONFIRM, EXPECT_CONFIRMATION, Visit.Status.CONFIRMING)

    def confirm(state: ReceptionState) -> Command:
        """はい → check; いいえ → collect again; a direct correction → confirm the new details."""
        u = _understood(state)
        language = _lang(state)
        changed = _changes(state, u)
        if u.visitor_type == Visit.VisitorType.DELIVERY:
            return Command(
                goto="delivery",
                update={**changed, "visitor_type": u.visitor_type, "needs_signature": u.needs_signature},
            )
        if any(k in FIELDS for k in changed) and u.answer is not True:
            corrections = state.get("correction_count", 0) + 1
            update = {**changed, "correction_count": corrections}
            return Command(goto="check" if corrections >= MAX_CORRECTIONS else "ask_confirm", update=update)
        if u.answer is True:
            return Command(goto="check", update=changed)
        if u.answer is False:
            corrections = state.get("correction_count", 0) + 1
            if corrections >= MAX_CORRECTIONS:
                return Command(goto="check", update={"correction_count": corrections})
            update = {"correction_count": corrections, "correcting": True}
            return _ask(update, say("ask_correction", language), STEP_COLLECT, "")
        unclear = state.get("unclear_count", 0) + 1
        if unclear >= MAX_UNCLEAR:
            return Command(goto="to_desk", update={"unclear_count": unclear, "desk_reason": "unclear"})
        return _ask(
            {"unclear_count": unclear},
            say("confirm_unclear", language),
            STEP_CONFIRM,
            EXPECT_CONFIRMATION,
            Visit.Status.CONFIRMING,
        )

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
            state.get("visitor_name", ""), state.get("company_name", ""), host_ids, todays_appointments()
        )
        update: dict = {"unclear_count": 0}
        if appointment is not None:
            update.update(
                appointment_id=appointment.id,
                appointment_found=True,
                host_id=appointment.extra["host_id"],
                visitor_type=Visit.VisitorType.APPOINTMENT,
            )
            host = StaffMember.objects.get(pk=appointment.extra["host_id"])
            return _to_host(host, update)
        is_sales = state.get("visitor_type") == Visit.VisitorType.SALES
        update["visitor_type"] = Visit.VisitorType.SALES if is_sales else Visit.VisitorType.NO_APPOINTMENT
        update["appointment_found"] = False
        if not state.get("host_id") and not state.get("host_name"):
            if is_sales:
                return _finish(update, say("decline_sales", _lang(state)), Visit.Status.DECLINED)
            return Command(goto="to_desk", update={**update, "desk_reason": "no_host"})
        if host_match is not None and not host_match.found:
            return Command(goto="to_desk", update={**update, "desk_reason": "unknown_host"})
        if host_match is not None and host_match.ambiguous:
            candidates = list(host_match.candidates)
            update["host_candidates"] = [p.id for p in candidates]
            return _ask(update, _host_choice_question(state, candidates), STEP_CHOOSE_HOST, EXPECT_HOST_CHOICE)
        host = StaffMember.objects.get(pk=state["host_id"] if state.get("host_id") else host_match.person.id)
        return _to_host(host, update)

    def _to_host(host: StaffMember, update: dict) -> Command:
        update["host_id"] = host.pk
        if not host.is_present:
            return Command(goto="to_desk", update={**update, "desk_reason": "absent_host"})
        return Command(goto="notify", update=update)

    def _host_choice_question(state: ReceptionState, candidates: list[Person]) -> str:
        language = _lang(state)
        departments = [p.department or p.name for p in candidates]
        joined = "、".join(departments) if language == "ja" else ", ".join(departments[:-1]) + " or " + departments[-1]
        return say("ask_host_choice", language, host=state.get("host_name", ""), departments=joined)

    def choose_host(state: ReceptionState) -> Command:
        """The visitor names the department (or full name) of one of several same-named hosts."""
        u = _understood(state)
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
        return _ask({"unclear_count": unclear}, question, STEP_CHOOSE_HOST, EXPECT_HOST_CHOICE)

    def notify(state: ReceptionState) -> Command:
        """Tell the host; if unreachable the desk is told and so is the visitor, honestly."""
        language = _lang(state)
        visit = _saved_visit(state)
        host = visit.host
        found = bool(state.get("appointment_found"))
        outcome = notify_with_fallback(visit, host, "appointment" if found else "no_appointment")
        where = _kiosk_place(visit)
        label = _host_label(host, language)
        if outcome.host_reached:
            if found:
                location = visit.appointment.location if visit.appointment else ""
                room = say("room", language, location=location) if location else ""
                reply = say(
                    "host_notified_appointment",
                    language,
                    name=state.get("visitor_name", ""),
                    host=label,
                    room=room,
                    place=where,
                )
            else:
                reply = say(
                    "host_notified_no_appointment",
                    language,
                    name=state.get("visitor_name", ""),
                    host=label,
                    place=where,
                )
            return _finish({"host_notified": True}, reply, Visit.Status.HOST_NOTIFIED)
        key = "host_unreachable" if outcome.desk_reached else "nobody_reachable"
        return _finish({"host_notified": False}, say(key, language, host=label, place=where), Visit.Status.SENT_TO_DESK)

    def to_desk(state: ReceptionState) -> Command:
        """Hand the visitor to the reception desk, saying why in the visitor's language."""
        language = _lang(state)
        reason = state.get("desk_reason") or "unclear"
        visit = _saved_visit(state)
        outcome = notify_with_fallback(visit, None, reason)
        where = _kiosk_place(visit)
        if not outcome.desk_reached:
            return _finish({}, say("nobody_reachable", language), Visit.Status.SENT_TO_DESK)
        host = state.get("host_name", "")
        if reason == "absent_host" and state.get("host_id"):
            host = _host_label(visit.host, language)
        key = {"unknown_host": "desk_unknown_host", "absent_host": "desk_absent"}.get(reason, "desk_general")
        return _finish({}, say(key, language, host=host, place=where), Visit.Status.SENT_TO_DESK)

    def delivery(state: ReceptionState) -> Command:
        """Deliveries skip confirmation: leave it at the desk, or ring when a signature is needed."""
        language = _lang(state)
        signature = bool(state.get("needs_signature"))
        update = {"visitor_type": Visit.VisitorType.DELIVERY}
        if not state.get("purpose"):
            update["purpose"] = say("delivery_purpose_signature" if signature else "delivery_purpose", language)
        visit = _saved_visit({**state, **update})
        outcome = notify_with_fallback(visit, None, "delivery_signature" if signature else "delivery")
        if signature and not outcome.desk_reached:
            return _finish(update, say("nobody_reachable", language), Visit.Status.DELIVERY_GUIDED)
        return _finish(
            update, say("delivery_signature" if signature else "delivery", language), Visit.Status.DELIVERY_GUIDED
        )

    def finished(state: ReceptionState) -> dict:
        given = state.get("input") or {}
        said = given.get("text") or given.get("kind") or ""
        # The visitor may not have heard the closing words (e.g. the voice path changed): say them again.
        return {
            "reply": " ".join(part for part in (say("finished", _lang(state)), state.get("guidance", "")) if part),
            "input": {},
            "messages": [{"role": "visitor", "text": said}] if said else [],
        }

    def project(state: ReceptionState) -> dict:
        return {"visit_id": save_visit(state), "messages": [{"role": "assistant", "text": state.get("reply", "")}]}

    graph = StateGraph(ReceptionState)
    graph.add_node("greet", greet, destinations=("project",))
    graph.add_node("interpret", interpret, destinations=("collect", "confirm", "choose_host"))
    graph.add_node("collect", collect, destinations=("delivery", "to_desk", "ask_confirm", "check", "project"))
    graph.add_node("ask_confirm", ask_confirm, destinations=("project",))
    graph.add_node("confirm", confirm, destinations=("delivery", "check", "ask_confirm", "to_desk", "project"))
    graph.add_node("check", check, destinations=("notify", "to_desk", "project"))
    graph.add_node("choose_host", choose_host, destinations=("check", "to_desk", "project"))
    graph.add_node("notify", notify, destinations=("project",))
    graph.add_node("to_desk", to_desk, destinations=("project",))
    graph.add_node("delivery", delivery, destinations=("project",))
    graph.add_node("finished", finished)
    graph.add_node("project", project)
    graph.add_conditional_edges(START, route_entry, ["greet", "interpret", "finished"])
    graph.add_edge("finished", "project")
    graph.add_edge("project", END)
    return graph


def find_appointment(
    visitor_name: str, company_name: str, host_ids: set[int], appointments: list[Person]
) -> Person | None:
    """Today's appointment of this visitor: tolerant name match, narrowed by host, then company, then time."""
    if not visitor_name or not appointments:
        return None
    candidates = list(match_name(visitor_name, appointments).candidates)
    if host_ids:
        candidates = [a for a in candidates if a.extra.get("host_id") in host_ids]
    if len(candidates) > 1 and company_name:
        key = re.sub(r"株式会社|有限会社|\(株\)|inc\.?|corp\.?|co\.?,? ltd\.?|\s", "", company_name, flags=re.I).lower()
        same = [a for a in candidates if key and key in re.sub(r"株式会社|有限会社|\s", "", a.department).lower()]
        candidates = same or candidates
    if not candidates:
        return None
    now = timezone.now()
    return min(candidates, key=lambda a: abs((a.extra["start"] - now).total_seconds()))
