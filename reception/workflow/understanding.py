"""What understanding one visitor utterance gives, and the interface every reader implements.

One interface, `LanguageUnderstanding.understand(text, language, expecting)`, returns an `Understanding`: the
visitor fields the utterance gives, yes/no, a correction, a delivery. The readers are `rules.RuleBasedUnderstanding`
(offline, Japanese and English) and `chat.OpenAIChatUnderstanding` (a chat model that falls back to the rules);
`chat.get_understanding()` picks one from the settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .state import VISIT_FIELDS

# What the assistant last asked for, passed as `expecting`: a bare answer fills that field.
EXPECT_CONFIRMATION = "confirmation"
EXPECT_HOST_CHOICE = "host_choice"

# Answers and polite words, never a name, a company or a purpose: 「はい、お願いします」, 「そうです」, "yes please".
_POLITE = re.compile(
    r"はい|ええ|うん|いいえ|その通り|そのとおり|そうですね|そうです|そう|よろしく|宜しく|お願い|おねがい|いたします|"
    r"致します|します|ございます|ありがとう|どうも|どうぞ|です|"
    r"\b(?:yes|yeah|yep|please|thank you|thanks|that's right|that is right|right|correct|okay|ok|sure|no|"
    r"go ahead|that's it|that's all)\b|[、。,.!?！？\s]",
    re.I,
)


def is_polite_only(text: str) -> bool:
    """Whether `text` says nothing but yes, no and polite words."""
    return bool(text.strip()) and not _POLITE.sub("", text)


@dataclass
class Understanding:
    """What one utterance says. Empty strings mean "not said"; `answer` is None unless yes/no was said."""

    visitor_name: str = ""
    company_name: str = ""
    purpose: str = ""
    host_name: str = ""
    host_department: str = ""
    visitor_type: str = ""  # "", "appointment", "sales" or "delivery"
    answer: bool | None = None
    is_correction: bool = False
    needs_signature: bool = False

    def found(self) -> dict[str, str]:
        """The visitor fields this utterance gave, non-empty only."""
        return {name: getattr(self, name) for name in VISIT_FIELDS if getattr(self, name)}


class LanguageUnderstanding:
    """Interface: turn one utterance into an Understanding."""

    def understand(self, text: str, language: str, expecting: str = "") -> Understanding:
        """Read `text` (in `language`, "ja" or "en"); `expecting` is what the assistant last asked for."""
        raise NotImplementedError
