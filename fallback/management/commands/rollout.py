"""`manage.py rollout --percent N --reason R` (or --stage, --enable/--disable; --enable with --percent/--stage)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError, CommandParser

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
    help = (
        "Change the Realtime rollout: a percentage (0-100), a stage, or the on/off switch; "
        "--enable with --percent or --stage does both as one audited change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        share = parser.add_mutually_exclusive_group()
        share.add_argument("--percent", type=percentage, help="Share of sessions on Realtime, 0-100 (e.g. 12.5).")
        share.add_argument("--stage", choices=STAGE_ORDER, help="Move to a named stage (1/10/50/100 %%).")
        switch = parser.add_mutually_exclusive_group()
        switch.add_argument(
            "--enable", action="store_true", help="Switch Realtime on (admin override); may take --percent or --stage."
        )
        switch.add_argument("--disable", action="store_true", help="Switch Realtime off (admin override).")
        parser.add_argument("--override", action="store_true", help="With --stage: skip the soak/guard gate.")
        self.add_reason_argument(parser)

    def handle(self, *args: Any, reason: str, percent: float | None, stage: str | None, **options: Any) -> None:
        enable, disable, override = options["enable"], options["disable"], options["override"]
        share = {"percent": percent} if percent is not None else {"stage": stage} if stage is not None else {}
        if not (share or enable or disable):
            raise CommandError("Give one of --percent, --stage, --enable or --disable (--enable may take a share).")
        if disable and share:
            raise CommandError(
                "--disable takes no --percent or --stage: switching Realtime off ignores the share. "
                "Set the share on its own, or use --enable with it."
            )
        if override and stage is None:
            raise CommandError("--override goes with --stage only.")
        if "stage" in share:
            share["override"] = override
        if enable:
            self.run_action(Action.ENABLE, reason, **share)
        elif disable:
            self.run_action(Action.DISABLE, reason)
        elif percent is not None:
            self.run_action(Action.SET_ROLLOUT_PERCENTAGE, reason, **share)
        else:
            self.run_action(Action.SET_STAGE, reason, **share)
