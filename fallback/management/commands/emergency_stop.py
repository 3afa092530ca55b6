"""`manage.py emergency_stop --reason R [--clear]`: every session to Legacy, live Realtime sessions too."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from fallback.emergency import Action

from ._base import ActionCommand


class Command(ActionCommand):
    help = (
        "Emergency stop: new sessions go Legacy and live Realtime sessions move to Legacy at once. "
        "Latched until cleared with --clear (or resume_realtime)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_reason_argument(parser)
        parser.add_argument("--clear", action="store_true", help="Clear the emergency stop instead of setting it.")

    def handle(self, *args: Any, reason: str, clear: bool, **options: Any) -> None:
        self.run_action(Action.CLEAR_EMERGENCY_STOP if clear else Action.EMERGENCY_STOP, reason)
