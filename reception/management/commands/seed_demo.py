"""`manage.py seed_demo`: demo kiosk, staff and today's appointments; prints secrets once."""

from django.core.management.base import BaseCommand

from reception.demo import create_demo_data


class Command(BaseCommand):
    help = "Create demo data for a first run (idempotent) and print how to open the kiosk."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the server will listen.")

    def handle(self, *args, base_url: str, **options):
        setup = create_demo_data()
        if setup.admin_password:
            self.stdout.write(f"Admin: {base_url}/admin/  user 'admin', password (shown once): {setup.admin_password}")
        if setup.kiosk_key:
            self.stdout.write(f"Demo kiosk key (for programs, shown once): {setup.kiosk_key}")
        self.stdout.write(
            f"Pair this browser as the demo kiosk (one use): {base_url}/kiosk/pair/{setup.pairing_token}/"
        )
