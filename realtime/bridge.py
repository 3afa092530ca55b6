"""LangGraphBridge: the Realtime model's function calls run the reception workflow, and the workflow's state
writes the model's instructions.

The conversation lives in the workflow's checkpointed state, shared with the Legacy path: every function call is
one workflow step on that state, and a (re)started Realtime session is told what is collected, what is missing and
which question is pending, so a visitor is never asked twice whichever path heard them first.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from core.blocking import run_blocking
from reception import workflow
from reception.workflow.graph import missing_fields
from reception.workflow.state import VISIT_FIELDS

from .client import RealtimeClient
from .kiosk import KioskOutput

logger = logging.getLogger(__name__)

SAY_EXACTLY = "Now say exactly this to the visitor, word for word, and nothing else:"
# How the instructions name each of the visitor's fields (company_name, visitor_name, purpose, host_name).
_FIELD_NAMES = dict(
    zip(VISIT_FIELDS, ("company", "visitor's name", "purpose of the visit", "person visited"), strict=True)
)
_ROLE = """You are the voice of the reception kiosk in an office lobby. {speak}
The reception workflow decides what to ask and what happens next; you are its voice and its ears.
- Whenever the visitor gives their company, their name, the purpose of the visit or the person they are visiting,
  call collect_visitor_info with exactly what they said (omit what they did not say; a correction simply sends the
  new value).
- When the visitor answers the confirmation of their details, call confirm_visitor_info (true for yes).
- A delivery of a parcel or mail: call report_delivery. Asked which of several staff members: call choose_host.
- After every tool call, say the tool's `reply` to the visitor, word for word, and nothing else.
- If a tool answers ok=false, correct the call as its `details` say, or ask the visitor for what is `missing`.
- Never ask again for something already collected. Never invent staff members, rooms or appointments."""
_SPEAK = {
    "ja": "Speak Japanese, politely (keigo), briefly and warmly.",
    "en": "Speak English, briefly and warmly.",
}


def build_instructions(snapshot: workflow.TurnResult | None, language: str) -> str:
    """Session instructions: the receptionist's rules plus where this visit stands (collected, missing, pending)."""
    lines = [_ROLE.format(speak=_SPEAK.get(language, _SPEAK["en"])), "", "Where this visit stands:"]
    if snapshot is None:
        lines.append("- Nothing has been collected yet.")
        return "\n".join(lines)
    visit = snapshot.visit
    collected = [f"{_FIELD_NAMES[key]}: {visit[key]}" for key in _FIELD_NAMES if visit.get(key)]
    lines.append("- Collected: " + ("; ".join(collected) if collected else "nothing yet"))
    if snapshot.finished:
        lines.append(f"- The reception is complete (status {visit['status']}); only answer politely.")
    else:
        missing = [_FIELD_NAMES[key] for key in missing_fields(visit)]
        lines.append("- Still missing: " + (", ".join(missing) if missing else "nothing"))
        lines.append(f"- Status: {visit['status']}")
    if snapshot.reply:
        lines.append(f"- The last thing said to the visitor (the question pending): {snapshot.reply}")
    return "\n".join(lines)


def say_exactly(instructions: str, text: str) -> str:
    """Per-response instructions that make the model speak `text` (a greeting or a pending question)."""
    return f"{instructions}\n\n{SAY_EXACTLY}\n{text}"


def text_to_say(instructions: str) -> str | None:
    """The text `say_exactly` asked for, or None."""
    _, found, text = instructions.rpartition(SAY_EXACTLY)
    return text.strip() if found else None


class LangGraphBridge:
    """Runs the model's function calls as workflow steps of `session_id` and keeps the kiosk's visit view current."""

    def __init__(self, session_id: str, output: KioskOutput) -> None:
        self.session_id = session_id
        self.output = output

    async def instructions(self, language: str) -> str:
        """Session instructions from the session's checkpointed state."""
        snapshot = await run_blocking(workflow.snapshot)(self.session_id)
        return build_instructions(snapshot, language)

    async def handle_call(
        self, client: RealtimeClient, call_id: str, name: str, arguments: str
    ) -> workflow.ToolCallResult:
        """Run one call, answer it (`function_call_output` + `response.create`), then send the kiosk `visit.updated`."""
        result = await self.run_call(name, arguments)
        await client.send_function_output(call_id, result.output)
        if result.turn is not None:
            await self.output.send_message({"type": "visit.updated", **result.turn.visit})
        return result

    async def run_call(self, name: str, arguments: str) -> workflow.ToolCallResult:
        """The workflow step for `name(arguments)`; anything wrong becomes a structured error output, never raises."""
        try:
            parsed: Any = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return workflow.ToolCallResult(
                output={
                    "ok": False,
                    "error": "invalid_json",
                    "message": f"The arguments are not valid JSON ({exc.msg}); call {name} again with a JSON object.",
                }
            )
        try:
            return await run_blocking(workflow.handle_tool_call)(self.session_id, name, parsed)
        except Exception:
            logger.exception("session %s: tool %s failed in the workflow", self.session_id, name)
            return workflow.ToolCallResult(
                output={
                    "ok": False,
                    "error": "internal_error",
                    "message": "The reception system could not record this. Apologise and ask the visitor to "
                    "speak to the reception staff.",
                }
            )
