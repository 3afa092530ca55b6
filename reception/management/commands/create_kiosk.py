"""`manage.py create_kiosk NAME`: register a kiosk and print its key as the last line."""

from django.core.management.base import BaseCommand, CommandError

from core.history import audit_context, cli_actor
from reception.models import Kiosk


class Command(BaseCommand):
    help = "Create a kiosk and print its key (shown only once) as the last line of output."

    def add_arguments(self, parser):
        parser.add_argument("name", help="A name staff recognise, e.g. 'Lobby 1F'.")
        parser.add_argument("--location", default="", help="Where visitors wait, told to them at the end.")
        parser.add_argument("--reason", default="create_kiosk", help="Why (kept in the change history).")

    def handle(self, *args, name: str, location: str, reason: str, **options):
        if Kiosk.objects.filter(name=name).exists():
            raise CommandError(f"A kiosk named {name!r} exists already; issue a new key from the admin instead.")
        kiosk = Kiosk(name=name, location=location)
        key = kiosk.set_new_key()
        with audit_context(cli_actor(), reason):
            kiosk.save()
        self.stdout.write(f"Created kiosk {name!r}. Its key is shown only now; keep it safe:")
        self.stdout.write(key)
