"""Cost and error-rate alerts: raised once per episode, cleared once, by whichever process sees it first.

Raising is ``UPDATE alertstate SET active=true ... WHERE name=:n AND active=false``; only the process whose
UPDATE changed the row logs, webhooks and counts the episode, so two processes never both send it.
"""

from __future__ import annotations

import logging
from datetime import datetime

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from .ledger import spend_last_hour
from .models import AlertName, AlertState
from .stats import error_rate_last_hour

logger = logging.getLogger(__name__)


def send_webhook(text: str) -> bool:
    """POST ``{"text": ...}`` (Slack-compatible) to ALERT_WEBHOOK_URL; failures are logged, never raised."""
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return False
    try:
        response = httpx.post(url, json={"text": text}, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS)
        response.raise_for_status()
    except httpx.HTTPError as exc:  # the URL holds a secret: log the kind of failure, not the URL
        logger.error("alert webhook failed: %s", type(exc).__name__)
        return False
    return True


def _ensure_rows() -> None:
    if AlertState.objects.count() < len(AlertName.values):
        AlertState.objects.bulk_create([AlertState(name=n) for n in AlertName.values], ignore_conflicts=True)


def transition(name: str, breach: bool, value: float, threshold: float, text: str, now: datetime) -> str | None:
    """Raise or clear one alert if this call is the one that changes it; return 'raised', 'cleared' or None."""
    _ensure_rows()
    rows = AlertState.objects.filter(name=name)
    if breach:
        changed = rows.filter(active=False).update(
            active=True, value=value, threshold=threshold, message=text[:300], raised_at=now, episodes=F("episodes") + 1
        )
        outcome, message = "raised", f"ALERT {text}"
    else:
        changed = rows.filter(active=True).update(active=False, value=value, cleared_at=now)
        outcome, message = "cleared", f"RESOLVED {name}: {text}"
    if not changed:
        rows.update(value=value)  # another process sent it already (or nothing changed): keep the value fresh
        return None
    (logger.warning if breach else logger.info)("%s", message)
    send_webhook(f"ai-reception: {message}")
    return outcome


def evaluate_alerts(*, now: datetime | None = None) -> dict[str, str]:
    """Check both alerts against their thresholds; returns the transitions this call made."""
    now = now or timezone.now()
    done: dict[str, str] = {}
    spend, limit = float(spend_last_hour(now=now)), float(settings.ALERT_COST_THRESHOLD)
    text = f"Realtime spend {spend:.2f} USD in the last hour (alert at {limit:.2f} USD/hour)"
    if result := transition(AlertName.COST, spend >= limit, spend, limit, text, now):
        done[AlertName.COST] = result
    error_rate, sample = error_rate_last_hour(now=now)
    threshold = float(settings.ALERT_ERROR_RATE_THRESHOLD)
    text = f"error rate {error_rate:.1%} over {sample} sessions/turns in the last hour (alert at {threshold:.1%})"
    if result := transition(AlertName.ERROR_RATE, error_rate >= threshold > 0, error_rate, threshold, text, now):
        done[AlertName.ERROR_RATE] = result
    return done


def active_alerts() -> list[AlertState]:
    return list(AlertState.objects.filter(active=True))
