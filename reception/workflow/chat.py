"""Language understanding by an OpenAI chat model, falling back to the rules on any error; and the choice of reader.

The model answers `/chat/completions` with a JSON object of the `Understanding` fields; the staff directory goes
into the system prompt so that hosts are named as the company knows them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import lru_cache

import httpx
from django.conf import settings

from core.timing import upstream_call

from .names import Person, staff_directory, strip_honorifics
from .rules import RuleBasedUnderstanding
from .understanding import LanguageUnderstanding, Understanding

logger = logging.getLogger(__name__)

_SYSTEM_PROMPT = """You extract facts from one utterance of a visitor at an office reception kiosk.
Reply with a JSON object with exactly these keys:
visitor_name, company_name, purpose, host_name, host_department (strings, "" when not said; names without
honorifics, as said), visitor_type ("", "appointment", "sales" or "delivery"), answer (true for yes, false for no,
null otherwise), is_correction (true when the visitor corrects something said before), needs_signature (true when a
delivery needs a signature or stamp).
The assistant last asked for: {expecting}. A bare answer fills that field.
Staff who can be visited: {staff}."""


class OpenAIChatUnderstanding(LanguageUnderstanding):
    """A chat model (`/chat/completions`, JSON output); the rule-based result on any error."""

    def __init__(
        self,
        fallback: LanguageUnderstanding | None = None,
        client: httpx.Client | None = None,
        directory: Callable[[], Sequence[Person]] = staff_directory,
    ) -> None:
        self._fallback = fallback or RuleBasedUnderstanding(directory)
        self._client = client or httpx.Client(timeout=10.0)
        self._directory = directory

    def understand(self, text: str, language: str, expecting: str = "") -> Understanding:
        """The model's reading of the utterance, or the rule-based one when the call or its JSON fails."""
        staff = ", ".join(f"{p.name} ({p.romaji}, {p.department})" for p in self._directory()[:200])
        body = {
            "model": settings.OPENAI_CHAT_MODEL,
            "response_format": {"type": "json_object"},
            "temperature": 0,
            "messages": [
                {"role": "system", "content": _SYSTEM_PROMPT.format(expecting=expecting or "anything", staff=staff)},
                {"role": "user", "content": f"[language: {language}] {text}"},
            ],
        }
        try:
            with upstream_call():  # the chat model's time is the upstream's, not our server's
                response = self._client.post(
                    f"{settings.OPENAI_BASE_URL.rstrip('/')}/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
                )
            response.raise_for_status()
            content = response.json()["choices"][0]["message"]["content"]
            return _from_json(json.loads(content))
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            # The exception text never holds the key (it travels in a header, not the URL).
            logger.warning("chat understanding failed, using rules: %s", type(exc).__name__)
            return self._fallback.understand(text, language, expecting)


def _from_json(data: dict) -> Understanding:
    """An Understanding from the model's JSON, ignoring unknown keys and coercing types."""
    if not isinstance(data, dict):
        raise TypeError("not an object")
    known = {f.name for f in fields(Understanding)}
    clean: dict = {}
    for key, value in data.items():
        if key not in known:
            continue
        if key in ("answer",):
            clean[key] = value if isinstance(value, bool) else None
        elif key in ("is_correction", "needs_signature"):
            clean[key] = bool(value)
        else:
            clean[key] = str(value or "").strip()
    result = Understanding(**clean)
    if result.visitor_type not in ("", "appointment", "sales", "delivery"):
        result.visitor_type = ""
    result.host_name = strip_honorifics(result.host_name)
    return result


def get_understanding() -> LanguageUnderstanding:
    """The chat model when a key is set and the Legacy engines are `openai`, else the rules."""
    if settings.OPENAI_API_KEY and settings.LEGACY_ENGINES == "openai":
        return _chat()
    return _rules()


@lru_cache(maxsize=1)
def _chat() -> OpenAIChatUnderstanding:
    """One chat client per process (it reads the endpoint, model and key from the settings at each call)."""
    return OpenAIChatUnderstanding()


@lru_cache(maxsize=1)
def _rules() -> RuleBasedUnderstanding:
    return RuleBasedUnderstanding()
