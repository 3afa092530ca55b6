"""`manage.py rollout --percent N --reason R` (or --stage, --enable/--disable)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandParser

from fallback.emergency import Action
from fallback.models import STAGE_ORDER

from ._base import ActionCommand


def percentage(value: str) -> float:
    """argparse type: a number from 0 to 100, decimals allowed."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 100, not {value!r}") from None
    if not 0 <= number <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100, not {value}")
    return number


class Command(ActionCommand):
    help = "Change the Realtime rollout: a percentage (0-100), a stage, or the on/off switch. Audited."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--percent", type=percentage, help="Share of sessions on Realtime, 0-100 (e.g. 12.5).")
        target.add_argument("--stage", choices=STAGE_ORDER, help="Move to a named stage (1/10/50/100 %%).")
        target.add_argument("--enable", action="store_true", help="Switch Realtime on (admin override).")
        target.add_argument("--disable", action="store_true", help="Switch Realtime off (admin override).")
        parser.add_argument("--override", action="store_true", help="With --stage: skip the soak/guard gate.")
        self.add_reason_argument(parser)

    def handle(self, *args: Any, reason: str, percent: float | None, stage: str | None, **options: Any) -> None:
        if percent is not None:
            self.run_action(Action.SET_ROLLOUT_PERCENTAGE, reason, percent=percent)
        elif stage is not None:
            self.run_action(Action.SET_STAGE, reason, stage=stage, override=options["override"])
        else:
            self.run_action(Action.ENABLE if options["enable"] else Action.DISABLE, reason)
