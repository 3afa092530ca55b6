"""`manage.py realtime_status`: the effective rollout config with sources, guards and emergency state."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from fallback.config import ENVIRONMENT_KILL_SWITCH, load_config, load_emergency
from fallback.gates import promotion_gates
from fallback.models import GuardState, RolloutConfig
from metrics.ledger import spend_last_hour


class Command(BaseCommand):
    help = "Print the effective rollout config (value, source, env default), the guards and the emergency state."

    def handle(self, *args: Any, **options: Any) -> None:
        emergency = load_emergency()
        config = load_config(emergency)
        out = self.stdout.write
        out(f"Rollout config v{config.version} (stage: {config.stage or 'custom'}, salt: {config.salt})")
        for name, value, source, default, note in config.as_rows():
            out(f"  {name:<20} {value!s:<12} [{source}] env default: {default}{f'  ({note})' if note else ''}")
        if config.disabled_by_environment:
            out(self.style.WARNING(f"Realtime is held off by {ENVIRONMENT_KILL_SWITCH} in the environment"))
        out("Guards:")
        for guard in GuardState.objects.all():
            extra = f" until {guard.retry_at:%Y-%m-%d %H:%M:%S}" if guard.state == "open" and guard.retry_at else ""
            out(f"  {guard.name:<12} {guard.state}{extra} trips={guard.trip_count} {guard.last_reason}".rstrip())
        out(f"  spend in the last hour: {spend_last_hour():.2f} USD")
        row = RolloutConfig.load()
        since = f"{row.stage_entered_at:%Y-%m-%d %H:%M}" if row.stage_entered_at else "-"
        out(f"Promotion gates (since {since}; auto_promote: {'on' if row.auto_promote else 'off'}):")
        for gate in promotion_gates(config=row):
            verdict = "pass" if gate.passed else f"FAIL ({gate.reason})"
            out(
                f"  {gate.name:<26} realtime={gate.realtime_display:<14} legacy={gate.legacy_display:<14} "
                f"[{gate.rule}] {verdict}"
            )
        if emergency.emergency_stop:
            state = self.style.ERROR(f"EMERGENCY STOP since {emergency.since} by {emergency.actor}: {emergency.reason}")
        elif emergency.force_fallback:
            state = self.style.WARNING(
                f"FORCE FALLBACK since {emergency.since} by {emergency.actor}: {emergency.reason}"
            )
        else:
            state = "normal"
        out(f"Emergency: {state}")
