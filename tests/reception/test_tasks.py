"""Background work on a real huey consumer over real storage (a SQLite file; Redis, marked `redis`): a conversation
turn queues the host's notification and answers before it is delivered; a failing webhook reaches the desk; the
periodic tasks are registered with their schedules and do their job."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone
from huey.contrib.djhuey import HUEY

from fallback.models import RolloutConfig
from fallback.tasks import rollout_autopilot_step
from metrics.models import TurnMetric
from metrics.tasks import prune_old_metrics
from reception.models import HostNotification, StaffMember, Visit
from reception.tasks import purge_old_visits
from tests.fallback.test_promotion_gates import at_stage_s1, seed, turn_autopilot_on
from tests.reception.test_notifications import FlakyWebhook
from tests.reception.test_reception_conversations import ONE_SENTENCE_EN
from tests.support.task_queue import redis_queue, running_consumer, sqlite_queue
from tests.support.waiting import wait_until
from voice.tasks import close_abandoned_sessions

REDIS_URL = "redis://127.0.0.1:6379/10"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def real_queue(request, tmp_path):
    """The task queue on real storage, as `manage.py run_huey` and the servers share it."""
    queue = sqlite_queue(str(tmp_path / "task_queue.db")) if request.param == "sqlite" else redis_queue(REDIS_URL)
    with queue:
        yield request.param


def _to_webhook(member: StaffMember, url: str) -> StaffMember:
    member.notify_via, member.webhook_url = StaffMember.NotifyVia.WEBHOOK, url
    member.save()
    return member


def _row(recipient: StaffMember) -> HostNotification:
    return HostNotification.objects.get(recipient=recipient)


@pytest.mark.django_db(transaction=True)
def test_the_turn_answers_before_the_consumer_delivers(real_queue, workflow, kiosk, directory):
    gate = threading.Event()
    with running_consumer(), FlakyWebhook(failures=0, gate=gate) as hook:
        sato = _to_webhook(directory["sato"], hook.url)
        workflow.start("bg", "en", kiosk.pk)
        workflow.handle_text("bg", ONE_SENTENCE_EN)
        result = workflow.handle_text("bg", "yes")
        # The reply is given while the webhook still holds the delivery (it answers only once the gate opens).
        assert "I have let Ken Sato know" in result.reply and result.visit["status"] == "host_notified"
        assert _row(sato).status == HostNotification.Status.PENDING
        wait_until(lambda: hook.received, what="the consumer posts to the host's webhook")
        assert _row(sato).status == HostNotification.Status.PENDING
        gate.set()
        wait_until(lambda: _row(sato).status == HostNotification.Status.SENT, what="the notification is sent")
    assert _row(sato).attempts == 1 and len(hook.received) == 1 and "来訪者 / Visitor" in hook.received[0]["text"]
    assert not mail.outbox  # the desk was not bothered


@pytest.mark.django_db(transaction=True)
def test_a_failing_webhook_reaches_the_desk(real_queue, workflow, kiosk, directory, settings):
    settings.NOTIFICATION_RETRY_DELAY_SECONDS = 0.01  # retries go through the consumer's schedule
    with running_consumer(), FlakyWebhook(failures=None) as hook:
        sato = _to_webhook(directory["sato"], hook.url)
        workflow.start("bg-fail", "en", kiosk.pk)
        workflow.handle_text("bg-fail", ONE_SENTENCE_EN)
        assert "I have let Ken Sato know" in workflow.handle_text("bg-fail", "yes").reply
        desk = directory["desk"]
        wait_until(lambda: HostNotification.objects.filter(recipient=desk, status="sent").exists(), within=15)
    failed = _row(sato)
    assert failed.status == HostNotification.Status.FAILED and failed.attempts == 3 and len(hook.received) == 3
    assert failed.last_error == "webhook answered HTTP 500"
    assert [m.to for m in mail.outbox] == [["desk@example.com"]] and "連絡がつきません" in mail.outbox[0].body


@pytest.mark.django_db(transaction=True)
def test_periodic_purges_run_on_the_consumer(real_queue, settings, kiosk):
    settings.VISITOR_RETENTION_DAYS = 30
    settings.METRICS_RETENTION_DAYS = 30
    long_ago = timezone.now() - timedelta(days=40)
    Visit.objects.create(session_id="old", kiosk=kiosk)
    Visit.objects.filter(session_id="old").update(created_at=long_ago)
    Visit.objects.create(session_id="recent", kiosk=kiosk)
    for event_id, at in (("old-turn", long_ago), ("recent-turn", timezone.now())):
        TurnMetric.objects.create(event_id=event_id, session_id="s", occurred_at=at, path="legacy")
    with running_consumer():
        purge_old_visits()  # queued as the scheduler queues it at its hour
        prune_old_metrics()
        wait_until(lambda: not Visit.objects.filter(session_id="old").exists(), what="the old visit is purged")
        wait_until(lambda: not TurnMetric.objects.filter(event_id="old-turn").exists(), what="old metrics pruned")
    assert list(Visit.objects.values_list("session_id", flat=True)) == ["recent"]
    assert list(TurnMetric.objects.values_list("event_id", flat=True)) == ["recent-turn"]


def runs_at(task, when: datetime) -> bool:
    """Whether the consumer's scheduler queues this periodic task at `when` (huey's clock)."""
    return task.task_class().validate_datetime(when)


def test_periodic_tasks_are_registered_with_their_schedules(settings):
    at = datetime(2026, 3, 2, settings.DAILY_PURGE_HOUR, 0)
    assert runs_at(purge_old_visits, at) and not runs_at(purge_old_visits, at + timedelta(hours=1))
    assert runs_at(prune_old_metrics, at + timedelta(minutes=30))
    assert not runs_at(prune_old_metrics, at)
    every = settings.ROLLOUT_AUTOPILOT_EVERY_MINUTES
    assert [runs_at(rollout_autopilot_step, at + timedelta(minutes=m)) for m in (0, 1, every)] == [
        True,
        False,
        True,
    ]
    every = settings.ABANDONED_VISITS_EVERY_MINUTES
    assert [runs_at(close_abandoned_sessions, at + timedelta(minutes=m)) for m in (0, 1, every)] == [
        True,
        False,
        True,
    ]
    tasks = (purge_old_visits, prune_old_metrics, rollout_autopilot_step, close_abandoned_sessions)
    assert {task.task_class for task in tasks} <= {type(task) for task in HUEY._registry.periodic_tasks}


@pytest.mark.django_db
def test_the_abandoned_visit_clean_up_closes_a_stale_visit(kiosk):
    Visit.objects.create(session_id="left", kiosk=kiosk, visitor_name="山田")
    Visit.objects.filter(session_id="left").update(updated_at=timezone.now() - timedelta(hours=1))
    Visit.objects.create(session_id="live", kiosk=kiosk, visitor_name="佐藤")
    close_abandoned_sessions()
    assert dict(Visit.objects.values_list("session_id", "status")) == {"left": "abandoned", "live": "collecting"}


@pytest.mark.django_db
def test_the_autopilot_task_promotes_on_green_gates():
    at_stage_s1()
    turn_autopilot_on()
    RolloutConfig.objects.filter(pk=1).update(stage_entered_at=timezone.now() - timedelta(hours=25))
    seed("realtime", at=timezone.now() - timedelta(hours=2))
    seed("legacy", at=timezone.now() - timedelta(hours=2))
    rollout_autopilot_step()
    assert RolloutConfig.load().stage == "s10"
