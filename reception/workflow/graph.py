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

from dataclasses import asdict, replace
from functools import partial

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from reception.models import Visit

from .chat import get_understanding
from .outcome import (
    ask,
    asked_again,
    check,
    choose_host,
    delivery,
    language_of,
    notify,
    save_visit,
    to_desk,
    understood,
)
from .prompts import field_list, say
from .reconcile import reconcile_with_today
from .state import STEP_CHOOSE_HOST, STEP_COLLECT, STEP_CONFIRM, STEP_DONE, VISIT_FIELDS, ReceptionState
from .understanding import EXPECT_CONFIRMATION, LanguageUnderstanding, Understanding

MAX_CORRECTIONS = 3
MAX_UNCLEAR = 3


def missing_fields(state: ReceptionState) -> list[str]:
    """The visitor fields still needed, in asking order (a sales visitor need not name a host)."""
    needed = [f for f in VISIT_FIELDS if not (state.get(f) or "").strip()]
    if state.get("visitor_type") == Visit.VisitorType.SALES and "host_name" in needed:
        needed.remove("host_name")
    return needed


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
    replaced = any(state.get(k) for k in changed if k in VISIT_FIELDS)
    return replaced or (u.is_correction and any(k in VISIT_FIELDS for k in changed))


def route_entry(state: ReceptionState) -> str:
    """The first node of a turn, by the persisted step: greet a new session, else read the input."""
    step = state.get("step") or ""
    if step == STEP_DONE:
        return "finished"
    if not step and not state.get("input"):
        return "greet"
    return "interpret"


def greet(state: ReceptionState) -> Command:
    """Welcome a new visitor and ask for the details."""
    return ask(
        {"visitor_type": Visit.VisitorType.UNKNOWN, "correction_count": 0, "unclear_count": 0},
        say("greeting", language_of(state)),
        STEP_COLLECT,
        "",
    )


def _read(given: dict, state: ReceptionState, understanding: LanguageUnderstanding | None) -> tuple[Understanding, str]:
    """The Understanding of one input (utterance or tool-call fields), and the line the conversation log keeps."""
    kind = given.get("kind")
    if kind == "text":
        reader = understanding or get_understanding()
        said = given.get("text", "")
        return reader.understand(said, language_of(state), state.get("expecting", "")), said
    if kind == "fields":
        fields = {k: str(v).strip() for k, v in given.get("fields", {}).items() if k in VISIT_FIELDS and v}
        # Details a model reports at the read-back are the visitor's corrections of it (「いいえ、佐藤さんと…」).
        u = Understanding(**fields, is_correction=state.get("step") == STEP_CONFIRM)
        return u, "[collect_visitor_info] " + ", ".join(f"{k}={v}" for k, v in u.found().items())
    if kind == "confirm":
        u = Understanding(answer=bool(given.get("confirmed")))
        return u, f"[confirm_visitor_info] confirmed={u.answer}"
    if kind == "delivery":  # a report of a delivery also says no to a read-back of a visit
        signature = bool(given.get("needs_signature"))
        u = Understanding(
            answer=False,
            visitor_type=Visit.VisitorType.DELIVERY,
            needs_signature=signature,
            company_name=str(given.get("company_name") or "").strip(),
            purpose=say("delivery_purpose_signature" if signature else "delivery_purpose", language_of(state)),
        )
        return u, f"[report_delivery] needs_signature={signature}"
    u = Understanding(host_department=str(given.get("department") or "").strip())  # host_choice
    return u, f"[choose_host] {u.host_department}"


def interpret(state: ReceptionState, understanding: LanguageUnderstanding | None = None) -> Command:
    """Read this turn's input (utterance or tool-call fields) into an Understanding."""
    given = state.get("input") or {}
    u, said = _read(given, state, understanding)
    if given.get("kind") in ("text", "fields", "delivery"):
        u = reconcile_with_today(u, state, language_of(state))
    step = state.get("step") or STEP_COLLECT
    goto = {STEP_CONFIRM: "confirm", STEP_CHOOSE_HOST: "choose_host"}.get(step, "collect")
    return Command(
        goto=goto,
        update={
            "understood": asdict(u),
            "input": {},
            "messages": [{"role": "visitor", "text": said}],
            "turn_count": state.get("turn_count", 0) + 1,
        },
    )


def _merged_update(state: ReceptionState, u: Understanding) -> dict:
    """What this turn changes while collecting: fields, visitor type, signature and the correction count."""
    update: dict = _changes(state, u)
    if u.visitor_type and (
        u.visitor_type == Visit.VisitorType.DELIVERY or state.get("visitor_type") in ("", None, "unknown")
    ):
        update["visitor_type"] = u.visitor_type
    if u.needs_signature:
        update["needs_signature"] = True
    counted = _is_correction(state, u, update) and not state.get("correcting")
    update["correction_count"] = state.get("correction_count", 0) + (1 if counted else 0)
    if any(k in VISIT_FIELDS for k in update):
        update["correcting"] = False
    return update


def _not_a_delivery(u: Understanding) -> Understanding:
    """`u` without its delivery: the rest of what was said stands."""
    return replace(u, visitor_type="", needs_signature=False, purpose="")


def _delivery_misheard(state: ReceptionState, u: Understanding) -> bool:
    """A delivery word and no courier company from a visitor who already said they have an appointment: Whisper's
    reading of noise or of a short answer (「はい」 heard as 「お届け物」), not a courier. It is asked again."""
    return (
        u.visitor_type == Visit.VisitorType.DELIVERY
        and state.get("visitor_type") == Visit.VisitorType.APPOINTMENT
        and not u.company_name
    )


def collect(state: ReceptionState) -> Command:
    """Merge what was said; go to delivery, confirmation, or ask for what is missing."""
    language = language_of(state)
    u = understood(state)
    update = _merged_update(state, _not_a_delivery(u) if _delivery_misheard(state, u) else u)
    merged: ReceptionState = {**state, **update}
    if merged.get("visitor_type") == Visit.VisitorType.DELIVERY:
        return Command(goto="delivery", update=update)
    missing = missing_fields(merged)
    progress = any(k in VISIT_FIELDS for k in update) or "visitor_type" in update
    if not progress:
        unclear = state.get("unclear_count", 0) + 1
        if unclear >= MAX_UNCLEAR:
            return Command(goto="to_desk", update={**update, "unclear_count": unclear, "desk_reason": "unclear"})
        wanted = missing or list(VISIT_FIELDS)
        reply = say("ask_unclear", language, fields=field_list(wanted, language))
        # Asked for everything again (a correction not understood), a bare answer fills no one field: 「山川です」
        # is the visitor's name, as after 「正しい内容をお聞かせください」, not the company named first.
        expecting = missing[0] if missing else ""
        return ask({**update, "unclear_count": unclear, **asked_again(state)}, reply, STEP_COLLECT, expecting)
    update["unclear_count"] = 0
    if not missing:
        return Command(goto="check" if update["correction_count"] >= MAX_CORRECTIONS else "ask_confirm", update=update)
    reply = say("ask_missing", language, fields=field_list(missing, language))
    # The first field named in the question is the one a bare answer ("Globex.", 「テストです」) fills.
    return ask(update, reply, STEP_COLLECT, missing[0])


def ask_confirm(state: ReceptionState) -> Command:
    """Read the collected details back and ask whether they are right."""
    language = language_of(state)
    host = say("confirm_host", language, host=state["host_name"]) if state.get("host_name") else ""
    reply = say(
        "confirm",
        language,
        company=state.get("company_name", ""),
        name=state.get("visitor_name", ""),
        host=host,
        purpose=state.get("purpose", ""),
    )
    return ask({"unclear_count": 0}, reply, STEP_CONFIRM, EXPECT_CONFIRMATION, Visit.Status.CONFIRMING)


def confirm(state: ReceptionState) -> Command:
    """はい → check; いいえ → collect again; a direct correction → confirm the new details."""
    u = understood(state)
    if u.visitor_type == Visit.VisitorType.DELIVERY and u.answer is not False:
        u = _not_a_delivery(u)  # a lone 「お届け物」 at the read-back is words misheard, not another kind of visit
    changed = _changes(state, u)
    if u.visitor_type == Visit.VisitorType.DELIVERY:  # 「いいえ、お届け物です」, or the model's report_delivery
        return Command(
            goto="delivery",
            update={**changed, "visitor_type": u.visitor_type, "needs_signature": u.needs_signature},
        )
    if any(k in VISIT_FIELDS for k in changed) and u.answer is not True:
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
        return ask(update, say("ask_correction", language_of(state)), STEP_COLLECT, "")
    unclear = state.get("unclear_count", 0) + 1
    if unclear >= MAX_UNCLEAR:
        return Command(goto="to_desk", update={"unclear_count": unclear, "desk_reason": "unclear"})
    return ask(
        {"unclear_count": unclear, **asked_again(state)},
        say("confirm_unclear", language_of(state)),
        STEP_CONFIRM,
        EXPECT_CONFIRMATION,
        Visit.Status.CONFIRMING,
    )


def reask_reply(state: ReceptionState) -> str:
    """What to say when the visitor's words could not be made out (noise, low recognition confidence): the
    pending question asked again, politely. Nothing in the state changes."""
    language = language_of(state)
    step = state.get("step", "")
    if step == STEP_CONFIRM:
        return say("confirm_unclear", language)
    if step in ("", STEP_COLLECT):
        wanted = missing_fields(state) or list(VISIT_FIELDS)
        return say("ask_unclear", language, fields=field_list(wanted, language))
    return state.get("reply", "")  # a choice between hosts, or the closing words: the same question again


def finished(state: ReceptionState) -> dict:
    """A visitor who speaks after the end hears the closing words again."""
    given = state.get("input") or {}
    said = given.get("text") or given.get("kind") or ""
    # The visitor may not have heard the closing words (e.g. the voice path changed): say them again.
    return {
        "reply": " ".join(part for part in (say("finished", language_of(state)), state.get("guidance", "")) if part),
        "input": {},
        "messages": [{"role": "visitor", "text": said}] if said else [],
    }


def project(state: ReceptionState) -> dict:
    """End of every run: write the Visit row and log the reply."""
    return {"visit_id": save_visit(state), "messages": [{"role": "assistant", "text": state.get("reply", "")}]}


def build_graph(understanding: LanguageUnderstanding | None = None) -> StateGraph:
    """The uncompiled graph; `understanding` defaults to `get_understanding()` at each turn."""
    graph = StateGraph(ReceptionState)
    graph.add_node("greet", greet, destinations=("project",))
    graph.add_node(
        "interpret", partial(interpret, understanding=understanding), destinations=("collect", "confirm", "choose_host")
    )
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
