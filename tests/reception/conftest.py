"""Fixtures for the reception workflow tests: a staff directory, today's appointments, a kiosk, a clean checkpointer."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from reception.models import Appointment, Kiosk, StaffMember
from reception.workflow import ReceptionWorkflow, reset_checkpointer


@pytest.fixture
def workflow_settings(settings, tmp_path):
    """Checkpoints in tmp_path, mail in memory, no retry delay, rule-based understanding."""
    settings.WORKFLOW_CHECKPOINT_PATH = str(tmp_path / "checkpoints.db")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFICATION_RETRY_DELAY_SECONDS = 0
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    settings.OPENAI_API_KEY = ""
    settings.LEGACY_ENGINES = "local"
    reset_checkpointer()
    yield settings
    reset_checkpointer()


def _staff(name, reading, romaji, department, email, **extra) -> StaffMember:
    return StaffMember.objects.create(
        name=name, reading=reading, romaji=romaji, department=department, email=email, **extra
    )


@pytest.fixture
def directory(db):
    """The staff directory: two 田中 (sales, development), 佐藤, an absent 鈴木, and the reception desk."""
    return {
        "desk": _staff(
            "受付", "うけつけ", "Reception", "総務部 (General Affairs)", "desk@example.com", is_reception_desk=True
        ),
        "tanaka_ichiro": _staff(
            "田中 一郎", "たなか いちろう", "Ichiro Tanaka", "営業部 (Sales)", "ichiro.tanaka@example.com"
        ),
        "tanaka_hanako": _staff(
            "田中 花子", "たなか はなこ", "Hanako Tanaka", "開発部 (Development)", "hanako.tanaka@example.com"
        ),
        "sato": _staff("佐藤 健", "さとう けん", "Ken Sato", "総務部 (General Affairs)", "ken.sato@example.com"),
        "suzuki": _staff(
            "鈴木 美咲", "すずき みさき", "Misaki Suzuki", "人事部 (HR)", "misaki.suzuki@example.com", is_present=False
        ),
    }


def _today_at(hour: int) -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate(), time(hour, 0)))


@pytest.fixture
def appointments(directory):
    """Today's appointments: 山田 太郎 (株式会社テスト) with 田中 一郎 in 会議室A, John Smith (Acme) with 佐藤 健."""
    return {
        "yamada": Appointment.objects.create(
            visitor_name="山田 太郎",
            visitor_company="株式会社テスト",
            host=directory["tanaka_ichiro"],
            start=_today_at(10),
            end=_today_at(11),
            location="会議室A",
        ),
        "smith": Appointment.objects.create(
            visitor_name="John Smith",
            visitor_company="Acme Corp",
            host=directory["sato"],
            start=_today_at(14),
            end=_today_at(15),
            location="Meeting Room B",
        ),
        "yesterday": Appointment.objects.create(
            visitor_name="中村 一",
            visitor_company="株式会社サンプル",
            host=directory["sato"],
            start=_today_at(10) - timedelta(days=1),
            end=_today_at(11) - timedelta(days=1),
        ),
    }


@pytest.fixture
def kiosk(db):
    kiosk = Kiosk(name="Lobby 1", location="1階ロビーのソファ")
    kiosk.set_new_key()
    kiosk.save()
    return kiosk


@pytest.fixture
def workflow(workflow_settings, appointments, kiosk):
    """A ReceptionWorkflow with the rule-based understanding over the fixtures' directory."""
    return ReceptionWorkflow()
