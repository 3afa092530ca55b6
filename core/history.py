"""Change history (django-simple-history) of kiosks, staff, appointments, API tokens and prices.

Each change keeps a full snapshot of the row, so "before" and "after" are a snapshot and the one before
it (`record.diff_against(record.prev_record)`, shown in the admin's History page). Who is
`history_user` when a logged-in user made the change, and always `history_actor` in the audit trail's
words (`user:<name>`, `cli:<os user>`, `system`); why is `history_change_reason`. Admin changes take
the user from the request (HistoryRequestMiddleware) and the reason from the change form; commands and
services wrap their work in `audit_context(actor, reason)`.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import models
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record
from simple_history.utils import bulk_create_with_history

REASON_MAX_LENGTH = 100  # django-simple-history's history_change_reason column

_context: ContextVar[tuple[str, str] | None] = ContextVar("audit_context", default=None)


@contextmanager
def audit_context(actor: str, reason: str) -> Iterator[None]:
    """Every history row written inside carries this actor (unless a user is known) and reason."""
    token = _context.set((actor, reason[:REASON_MAX_LENGTH]))
    try:
        yield
    finally:
        _context.reset(token)


def cli_actor() -> str:
    """The audit actor of a command: the OS user, prefixed ``cli:``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        return "cli:unknown"


def current_actor(default: str = "system") -> str:
    context = _context.get()
    return context[0] if context else default


class HistoryActor(models.Model):
    """The extra column of every historical table: who, also for changes made without a logged-in user."""

    history_actor = models.CharField(_("actor"), max_length=150, blank=True)

    class Meta:
        abstract = True


class AuditedHistory(HistoricalRecords):
    """`HistoricalRecords` with the actor column and the reason of the surrounding `audit_context`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(bases=[HistoryActor], **kwargs)

    def get_change_reason_for_object(self, instance, history_type, using):
        reason = super().get_change_reason_for_object(instance, history_type, using)
        context = _context.get()
        return reason or (context[1] if context else None)


@receiver(pre_create_historical_record)
def _record_actor(sender, history_instance, history_user=None, **kwargs) -> None:
    if isinstance(history_instance, HistoryActor):
        history_instance.history_actor = (
            f"user:{history_user.get_username()}" if history_user is not None else current_actor()
        )


def bulk_create_audited(objects: list[models.Model], model: type[models.Model]) -> list[models.Model]:
    """`bulk_create` that also writes each row's history with the current actor and reason."""
    context = _context.get()
    return bulk_create_with_history(
        objects,
        model,
        default_change_reason=context[1] if context else "",
        custom_historical_attrs={"history_actor": current_actor()},
    )
