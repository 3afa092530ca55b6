"""Shared pieces of the rollout and emergency commands."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.history import cli_actor
from fallback.emergency import EMERGENCY_ACTIONS, Action, ActionError, apply_action, prepare_broadcast

__all__ = ["ActionCommand", "cli_actor"]


class ActionCommand(BaseCommand):
    """A command that applies one audited action and prints a one-line summary."""

    def add_reason_argument(self, parser: CommandParser) -> None:
        parser.add_argument("--reason", required=True, help="Why (required; stored in the audit trail).")

    def run_action(self, action: Action, reason: str, **params: Any) -> None:
        if action in EMERGENCY_ACTIONS:
            prepare_broadcast()
        try:
            result = apply_action(action, actor=cli_actor(), reason=reason, **params)
        except ActionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(result.summary()))
