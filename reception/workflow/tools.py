"""The tools the Realtime path declares in `session.update`, and validation of their arguments.

Shapes follow the OpenAI Realtime GA function tools: `{"type": "function", "name", "description", "parameters"}`.
"""

from __future__ import annotations

from typing import Any

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "collect_visitor_info",
        "description": (
            "Record what the visitor has said about themselves. Call it whenever the visitor gives any of these; "
            "omit what was not said. Corrections simply send the corrected value. Say the returned `reply` to the "
            "visitor."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "visitor_name": {"type": "string", "description": "The visitor's name, as said."},
                "company_name": {"type": "string", "description": "The visitor's company or organisation."},
                "purpose": {"type": "string", "description": "Why they came, e.g. 打ち合わせ, interview, delivery."},
                "host_name": {"type": "string", "description": "The staff member they are visiting, as said."},
            },
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "confirm_visitor_info",
        "description": "The visitor's yes/no answer to the confirmation of their details. Say the returned `reply`.",
        "parameters": {
            "type": "object",
            "properties": {"confirmed": {"type": "boolean", "description": "true for yes, false for no."}},
            "required": ["confirmed"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "report_delivery",
        "description": "The visitor is delivering a parcel or mail. Say the returned `reply`.",
        "parameters": {
            "type": "object",
            "properties": {
                "needs_signature": {"type": "boolean", "description": "true when a signature or stamp is needed."},
                "company_name": {"type": "string", "description": "The carrier or sender, if said."},
            },
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "choose_host",
        "description": "Which of several staff members with the same name the visitor means. Say the returned `reply`.",
        "parameters": {
            "type": "object",
            "properties": {"department": {"type": "string", "description": "The department, or the full name."}},
            "required": ["department"],
            "additionalProperties": False,
        },
    },
]

TOOLS_BY_NAME = {tool["name"]: tool for tool in TOOLS}
_JSON_TYPES = {"string": str, "boolean": bool}


def validate_arguments(name: str, arguments: Any) -> dict[str, Any] | None:
    """None when the call is valid, else a structured error the model can act on.

    Cases: unknown tool, arguments not an object, unknown argument, wrong type, missing required argument,
    and a `collect_visitor_info` call with no value at all.
    """
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        return {
            "ok": False,
            "error": "unknown_tool",
            "message": f"No tool named {name!r}.",
            "tools": list(TOOLS_BY_NAME),
        }
    if not isinstance(arguments, dict):
        return {"ok": False, "error": "invalid_arguments", "message": "Arguments must be a JSON object."}
    schema = tool["parameters"]
    problems: dict[str, str] = {}
    for key, value in arguments.items():
        spec = schema["properties"].get(key)
        if spec is None:
            problems[key] = "unknown argument"
        elif value is not None and not isinstance(value, _JSON_TYPES[spec["type"]]):
            problems[key] = f"must be a {spec['type']}"
    for key in schema.get("required", []):
        if arguments.get(key) is None:
            problems[key] = "required"
    if not problems and name == "collect_visitor_info" and not any(str(v or "").strip() for v in arguments.values()):
        problems["*"] = "give at least one of " + ", ".join(schema["properties"])
    if problems:
        return {
            "ok": False,
            "error": "invalid_arguments",
            "message": "Fix the arguments and call the tool again.",
            "details": problems,
        }
    return None
