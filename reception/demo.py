"""Demo data for `make run`: a kiosk, a small staff directory, today's appointments and an admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .models import Appointment, Kiosk, KioskPairing, StaffMember

DEMO_KIOSK = "Demo lobby kiosk"
DEMO_STAFF = [
    {"name": "田中 一郎", "reading": "たなか いちろう", "romaji": "Ichiro Tanaka", "department": "営業部"},
    {"name": "田中 美咲", "reading": "たなか みさき", "romaji": "Misaki Tanaka", "department": "人事部"},
    {"name": "鈴木 花子", "reading": "すずき はなこ", "romaji": "Hanako Suzuki", "department": "開発部"},
    {"name": "佐藤 健", "reading": "さとう けん", "romaji": "Ken Sato", "department": "総務部"},
    {"name": "受付", "reading": "うけつけ", "romaji": "Reception", "department": "総務部", "is_reception_desk": True},
]
# (visitor, company, host romaji, hour, room)
DEMO_APPOINTMENTS = [
    ("山田 太郎", "株式会社テスト", "Hanako Suzuki", 10, "会議室A"),
    ("John Smith", "Acme Corp", "Ichiro Tanaka", 14, "会議室B"),
    ("高橋 誠", "サンプル商事", "Ken Sato", 16, "会議室C"),
]


@dataclass
class DemoSetup:
    kiosk_key: str | None
    pairing_token: str
    admin_password: str | None


@transaction.atomic
def create_demo_data(today: datetime | None = None) -> DemoSetup:
    """Create what is missing (idempotent); secrets are returned once for the caller to print."""
    kiosk_key = None
    kiosk = Kiosk.objects.filter(name=DEMO_KIOSK).first()
    if kiosk is None:
        kiosk = Kiosk(name=DEMO_KIOSK, location="1F lobby / 1階ロビー")
        kiosk_key = kiosk.set_new_key()
        kiosk.save()
    for values in DEMO_STAFF:
        email = values["romaji"].lower().replace(" ", ".") + "@example.com"
        StaffMember.objects.get_or_create(name=values["name"], defaults={**values, "email": email})
    day = timezone.localdate(today)
    if not Appointment.objects.filter(start__date=day).exists():
        for visitor, company, host_romaji, hour, room in DEMO_APPOINTMENTS:
            start = timezone.make_aware(datetime.combine(day, time(hour)))
            Appointment.objects.create(
                visitor_name=visitor,
                visitor_company=company,
                host=StaffMember.objects.get(romaji=host_romaji),
                start=start,
                end=start + timedelta(hours=1),
                location=room,
            )
    admin_password = None
    user_model = get_user_model()
    if not user_model.objects.filter(is_superuser=True).exists():
        admin_password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@example.com", admin_password)
    _pairing, pairing_token = KioskPairing.create_link(kiosk)
    return DemoSetup(kiosk_key, pairing_token, admin_password)
