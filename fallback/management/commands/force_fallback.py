"""`manage.py force_fallback --reason R`: every new session goes Legacy; live sessions finish."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from fallback.emergency import Action

from ._base import ActionCommand


class Command(ActionCommand):
    help = "Force fallback: every new session goes Legacy (live ones finish); the rollout config is kept."

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_reason_argument(parser)

    def handle(self, *args: Any, reason: str, **options: Any) -> None:
        self.run_action(Action.FORCE_FALLBACK, reason)
