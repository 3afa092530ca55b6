"""`manage.py resume_realtime --reason R`: clear force fallback and emergency stop."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from fallback.emergency import Action

from ._base import ActionCommand


class Command(ActionCommand):
    help = "Resume: clear force fallback and emergency stop; the kept rollout config applies again."

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_reason_argument(parser)

    def handle(self, *args: Any, reason: str, **options: Any) -> None:
        self.run_action(Action.RESUME, reason)
