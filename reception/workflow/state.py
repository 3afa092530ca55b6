"""The reception workflow's state: one per kiosk session, checkpointed after every turn."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

# What the visitor tells us, in the order the workflow asks for it.
VISIT_FIELDS = ("company_name", "visitor_name", "purpose", "host_name")

# Where the conversation stands (`step`); a new session has none yet.
STEP_COLLECT = "collect"
STEP_CONFIRM = "confirm"
STEP_CHOOSE_HOST = "choose_host"
STEP_DONE = "done"


class Message(TypedDict):
    """One line of the conversation."""

    role: str  # "visitor" or "assistant"
    text: str


class ReceptionState(TypedDict, total=False):
    """Everything the conversation knows. Nodes return partial updates; `messages` is appended to."""

    session_id: str
    kiosk_id: int | None
    language: str
    visit_id: int | None
    # What the visitor told us (as said; the matched host is host_id).
    visitor_name: str
    company_name: str
    purpose: str
    host_name: str
    host_department: str
    visitor_type: str
    needs_signature: bool
    # Where the conversation stands.
    step: str  # "" (new), "collect", "confirm", "choose_host", "done"
    expecting: str  # the field or answer the last reply asked for
    correction_count: int
    correcting: bool  # a "no" at confirmation was counted; the values that follow are the same correction
    unclear_count: int  # unclear answers in a row (reset by progress)
    reask_count: int  # questions asked again after an unclear answer, over the whole visit
    turn_count: int  # visitor turns read before the reception finished
    desk_reason: str
    host_candidates: list[int]
    # Outcome.
    host_id: int | None
    appointment_id: int | None
    appointment_found: bool
    host_notified: bool
    status: str
    finished: bool
    guidance: str  # the closing words (where to wait, what to do), said again if asked
    # This turn: the input (text or structured fields), its reading, and the answer.
    input: dict
    understood: dict
    reply: str
    messages: Annotated[list[Message], operator.add]
