"""`manage.py create_api_token USERNAME`: issue a REST API token to a staff user; the token is the last line."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.history import audit_context, cli_actor
from metrics.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a staff user and print it (shown only once; only its hash is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="An active staff user.")
        parser.add_argument("--reason", default="create_api_token", help="Why (kept in the change history).")

    def handle(self, *args: Any, username: str, reason: str, **options: Any) -> None:
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        try:
            with audit_context(cli_actor(), reason):
                token, raw = ApiToken.issue(user)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created an API token for {username}. Send it as 'Authorization: Bearer <token>':")
        self.stdout.write(f"It expires at {token.expires_at:%Y-%m-%d %H:%M %Z} (API_TOKEN_TTL_DAYS).")
        self.stdout.write(raw)
