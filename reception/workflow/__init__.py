"""The reception workflow's public API, shared by both voice paths (Legacy text and Realtime tool calls).

All calls are synchronous and touch the database and the checkpointer: call them from a worker thread
(`core.blocking.run_blocking`), never from the event loop. Calls for one session are
serialised by a per-session lock; different sessions run in parallel.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.utils import timezone
from langgraph.graph.state import CompiledStateGraph

from reception.models import Visit

from .chat import get_understanding
from .checkpoint import get_checkpointer, reset_checkpointer
from .graph import build_graph, missing_fields, reask_reply
from .rules import RuleBasedUnderstanding
from .state import STEP_CHOOSE_HOST, STEP_CONFIRM, STEP_DONE, VISIT_FIELDS, ReceptionState
from .tools import TOOLS, validate_arguments
from .understanding import LanguageUnderstanding, Understanding

logger = logging.getLogger(__name__)

# Why a session ended when its visitor walked away: the idle timeout, or the clean-up of a crashed server.
ABANDONING_REASONS = frozenset({"idle", "inactive"})

# How `end` closes a reception that never finished: not a completed visit.
ENDED_STATUSES = (Visit.Status.ENDED, Visit.Status.ABANDONED)

# The keys of `visit.updated`: the visitor's fields, then what the workflow made of the visit.
VISIT_KEYS = (*VISIT_FIELDS, "visitor_type", "status")


@dataclass
class TurnResult:
    """What one turn produced: the reply to speak, the `visit.updated` fields, and the outcome."""

    reply: str
    visit: dict[str, str]
    finished: bool
    resumed: bool = False


@dataclass(frozen=True)
class VisitQuality:
    """How a session's conversation went: visitor turns, questions asked again, corrections, and its end.

    ``to_desk``: the reception ended by handing the visitor to the desk. ``seconds_to_complete``: from the
    greeting to the end of the reception, None while it is not finished."""

    turns: int
    reasks: int
    corrections: int
    finished: bool
    to_desk: bool
    seconds_to_complete: float | None


@dataclass
class ToolCallResult:
    """`output` goes back as the `function_call_output`; `turn` is None when the call was rejected."""

    output: dict[str, Any]
    turn: TurnResult | None = field(default=None)


def visit_fields(state: ReceptionState) -> dict[str, str]:
    """Exactly the keys of `visit.updated`, as strings."""
    values = {key: str(state.get(key) or "") for key in VISIT_KEYS}
    values["visitor_type"] = values["visitor_type"] or Visit.VisitorType.UNKNOWN
    values["status"] = values["status"] or Visit.Status.COLLECTING
    return values


class ReceptionWorkflow:
    """The conversation of each kiosk session, checkpointed per session id (thread id = session id)."""

    def __init__(self, understanding: LanguageUnderstanding | None = None) -> None:
        self._understanding = understanding
        self._lock = threading.Lock()
        self._session_locks: dict[str, threading.Lock] = {}
        self._compiled: CompiledStateGraph | None = None
        self._compiled_for: object | None = None

    # --- public API ------------------------------------------------------------------------------------------

    def start(self, session_id: str, language: str, kiosk_id: int | None) -> TurnResult:
        """Greet a new session; a session with state is not greeted again: its pending question comes back."""
        with self._session(session_id):
            state = self._state(session_id)
            if state.get("step"):
                return self._result(state, resumed=True)
            language = language if language in ("ja", "en") else "ja"
            initial = {"session_id": session_id, "language": language, "kiosk_id": kiosk_id, "messages": []}
            return self._result(self._invoke(session_id, initial))

    def handle_text(self, session_id: str, text: str) -> TurnResult:
        """One visitor utterance (speech-to-text or typed), at most KIOSK_MAX_TEXT_CHARS characters are read."""
        text = (text or "").strip()[: settings.KIOSK_MAX_TEXT_CHARS]
        with self._session(session_id):
            given = self._turn_input(session_id, {"kind": "text", "text": text})
            result = self._result(self._invoke(session_id, given))
        # What was said is shown only with REALTIME_ENABLE_DETAILED_LOGGING (core.logs).
        logger.debug("visitor turn", extra={"transcript": text, "reply": result.reply, "visit": result.visit})
        return result

    def reask(self, session_id: str) -> TurnResult:
        """Speech that could not be made out: the pending question again, and the visit left as it is."""
        with self._session(session_id):
            state = self._state(session_id)
        return replace(self._result(state), reply=reask_reply(state))

    def handle_tool_call(self, session_id: str, name: str, arguments: dict) -> ToolCallResult:
        """A Realtime function call: a structured error for bad calls (never raises), else the same turn as text."""
        error = validate_arguments(name, arguments)
        if error is not None:
            return ToolCallResult(output=error)
        with self._session(session_id):
            state = self._state(session_id)
            step = state.get("step", "")
            if name == "confirm_visitor_info" and step != STEP_CONFIRM:
                return ToolCallResult(output=self._not_expected(state, "There is nothing to confirm yet."))
            if name == "choose_host" and step != STEP_CHOOSE_HOST:
                return ToolCallResult(output=self._not_expected(state, "No choice between hosts is pending."))
            given = {
                "collect_visitor_info": {"kind": "fields", "fields": arguments},
                "confirm_visitor_info": {"kind": "confirm", "confirmed": arguments.get("confirmed")},
                "report_delivery": {"kind": "delivery", **arguments},
                "choose_host": {"kind": "host_choice", "department": arguments.get("department")},
            }[name]
            values = self._invoke(session_id, self._turn_input(session_id, given))
        turn = self._result(values)
        output = {
            "ok": True,
            "reply": turn.reply,
            "visit": turn.visit,
            "missing": missing_fields(values) if not turn.finished else [],
            "awaiting": values.get("expecting", "") if not turn.finished else "",
            "finished": turn.finished,
        }
        return ToolCallResult(output=output, turn=turn)

    def snapshot(self, session_id: str) -> TurnResult | None:
        """The session's current state (last reply, visit fields), or None for an unknown session."""
        state = self._state(session_id)
        return self._result(state) if state.get("step") else None

    def quality(self, session_id: str) -> VisitQuality | None:
        """The session's conversation quality so far, or None for an unknown session."""
        state = self._state(session_id)
        if not state.get("step"):
            return None
        finished = bool(state.get("finished")) and state.get("status") not in ENDED_STATUSES
        seconds = None
        visit = Visit.objects.filter(session_id=session_id).values("created_at", "completed_at").first()
        if finished and visit and visit["completed_at"]:
            seconds = max((visit["completed_at"] - visit["created_at"]).total_seconds(), 0.0)
        return VisitQuality(
            turns=state.get("turn_count", 0),
            reasks=state.get("reask_count", 0),
            corrections=state.get("correction_count", 0),
            finished=finished,
            to_desk=finished and state.get("status") == Visit.Status.SENT_TO_DESK,
            seconds_to_complete=seconds,
        )

    def end(self, session_id: str, reason: str) -> int | None:
        """Close the session: an unfinished Visit becomes ENDED, or ABANDONED for the ABANDONING_REASONS.

        Returns the visit id (None if there was none)."""
        status = Visit.Status.ABANDONED if reason in ABANDONING_REASONS else Visit.Status.ENDED
        with self._session(session_id):
            visit = Visit.objects.filter(session_id=session_id).first()
            if visit is None:
                return None
            ended = Visit.objects.filter(pk=visit.pk).unfinished().update(status=status, completed_at=timezone.now())
            if ended and self._state(session_id).get("step"):
                self._graph().update_state(
                    self._config(session_id),
                    {"step": STEP_DONE, "status": status, "finished": True},
                    as_node="project",
                )
            logger.info(
                "session %s ended (%s), visit %s%s", session_id, reason, visit.pk, f" marked {status}" if ended else ""
            )
        with self._lock:
            self._session_locks.pop(session_id, None)
        return visit.pk

    def forget(self, session_id: str) -> None:
        """Delete the session's checkpoints (the conversation text); for retention purges. The Visit row stays."""
        with self._session(session_id):
            get_checkpointer().delete_thread(session_id)
        with self._lock:
            self._session_locks.pop(session_id, None)

    # --- internals -------------------------------------------------------------------------------------------

    def _graph(self) -> CompiledStateGraph:
        checkpointer = get_checkpointer()
        with self._lock:
            if self._compiled is None or self._compiled_for is not checkpointer:
                self._compiled = build_graph(self._understanding).compile(checkpointer=checkpointer)
                self._compiled_for = checkpointer
            return self._compiled

    def _session(self, session_id: str) -> threading.Lock:
        with self._lock:
            return self._session_locks.setdefault(session_id, threading.Lock())

    @staticmethod
    def _config(session_id: str) -> dict:
        return {"configurable": {"thread_id": session_id}}

    def _state(self, session_id: str) -> ReceptionState:
        return self._graph().get_state(self._config(session_id)).values or {}

    def _invoke(self, session_id: str, values: dict) -> ReceptionState:
        # One checkpoint per turn, at its end: a turn is one graph run, so a crash mid-turn leaves the
        # previous turn's state (the visitor got no answer and says it again). Per-step writes cost 7 ms.
        return self._graph().invoke(values, self._config(session_id), durability="exit")

    def _turn_input(self, session_id: str, given: dict) -> dict:
        """The invocation input; a session that was never started gets its identity and language here."""
        if self._state(session_id).get("step"):
            return {"input": given}
        text = given.get("text", "")
        language = "ja" if any("\u3040" <= ch <= "\u9fff" for ch in text) or not text else "en"
        return {"input": given, "session_id": session_id, "language": language, "kiosk_id": None, "messages": []}

    @staticmethod
    def _not_expected(state: ReceptionState, message: str) -> dict:
        return {
            "ok": False,
            "error": "not_expected",
            "message": message,
            "missing": missing_fields(state),
            "awaiting": state.get("expecting", ""),
        }

    @staticmethod
    def _result(state: ReceptionState, resumed: bool = False) -> TurnResult:
        return TurnResult(
            reply=state.get("reply", ""),
            visit=visit_fields(state),
            finished=bool(state.get("finished")),
            resumed=resumed,
        )


_default = ReceptionWorkflow()


def start(session_id: str, language: str, kiosk_id: int | None) -> TurnResult:
    """`ReceptionWorkflow.start` on the process-wide workflow."""
    return _default.start(session_id, language, kiosk_id)


def handle_text(session_id: str, text: str) -> TurnResult:
    """`ReceptionWorkflow.handle_text` on the process-wide workflow."""
    return _default.handle_text(session_id, text)


def reask(session_id: str) -> TurnResult:
    """`ReceptionWorkflow.reask` on the process-wide workflow."""
    return _default.reask(session_id)


def handle_tool_call(session_id: str, name: str, arguments: dict) -> ToolCallResult:
    """`ReceptionWorkflow.handle_tool_call` on the process-wide workflow."""
    return _default.handle_tool_call(session_id, name, arguments)


def snapshot(session_id: str) -> TurnResult | None:
    """`ReceptionWorkflow.snapshot` on the process-wide workflow."""
    return _default.snapshot(session_id)


def quality(session_id: str) -> VisitQuality | None:
    """`ReceptionWorkflow.quality` on the process-wide workflow."""
    return _default.quality(session_id)


def end(session_id: str, reason: str) -> int | None:
    """`ReceptionWorkflow.end` on the process-wide workflow."""
    return _default.end(session_id, reason)


def forget(session_id: str) -> None:
    """`ReceptionWorkflow.forget` on the process-wide workflow."""
    _default.forget(session_id)


def warm_up() -> None:
    """Load the tokenizer, the romaji tables (with the staff names' forms) and the checkpointer now, so the
    first visitors do not wait (the romaji tables alone take about 0.5 s).

    Always through the rules, which the chat model also falls back to: warming up never calls a paid API.
    """
    rules = RuleBasedUnderstanding()
    rules.understand("株式会社テストの山田太郎です。鈴木さんにお約束があります。", "ja")
    rules.understand("I'm John Smith from Acme, here to see Mr. Tanaka.", "en")
    get_checkpointer()


__all__ = [
    "TOOLS",
    "LanguageUnderstanding",
    "ReceptionWorkflow",
    "ToolCallResult",
    "TurnResult",
    "Understanding",
    "VisitQuality",
    "end",
    "forget",
    "get_understanding",
    "handle_text",
    "handle_tool_call",
    "quality",
    "reask",
    "reset_checkpointer",
    "snapshot",
    "start",
    "warm_up",
]
