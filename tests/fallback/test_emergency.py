"""Emergency and manual actions: one audited service, the broadcast, the commands and the admin console."""

from __future__ import annotations

import asyncio
import time
import uuid
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from fallback.emergency import CONTROL_GROUP, CONTROL_MESSAGE_TYPE, ActionError, apply_action
from fallback.models import AppendOnlyError, AuditEntry, EmergencyState, RolloutConfig, RoutingDecision
from fallback.watch import stop_watching_emergencies, watch_emergencies
from reception_project.settings import redis_channel_layer
from tests.fallback import harness as fallback_harness

REDIS_URL = "redis://127.0.0.1:6379/0"


def stop(reason: str = "smoke in the server room") -> None:
    apply_action("emergency_stop", actor="user:ops", reason=reason)


# --- the service ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_reason_is_required(reason):
    with pytest.raises(ActionError, match="reason is required"):
        apply_action("force_fallback", actor="user:ops", reason=reason)
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_overlong_reason_and_missing_actor_are_refused():
    with pytest.raises(ActionError, match="keep it to 500"):
        apply_action("force_fallback", actor="user:ops", reason="x" * 501)
    with pytest.raises(ActionError, match="An actor"):
        apply_action("force_fallback", actor=" ", reason="why")
    assert not EmergencyState.load().force_fallback


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("self_destruct", {}, "Unknown action 'self_destruct'"),
        ("set_rollout_percentage", {}, "needs percent"),
        ("set_rollout_percentage", {"percent": 101}, "Invalid rollout percentage 101"),
        ("set_rollout_percentage", {"percent": "lots"}, "Invalid rollout percentage 'lots'"),
        ("force_fallback", {"percent": 5}, "force_fallback takes no percent"),
        ("set_stage", {"stage": "s7"}, "Unknown stage 's7'"),
        ("reset_guard", {"guard": "disk"}, "Unknown guard 'disk'"),
        ("allowlist_remove", {"session_id": "nobody"}, "not on the allowlist"),
        ("set_cost_limit", {"cost_limit": -1}, "0 or more USD"),
        ("allowlist_add", {"session_id": "x" * 65}, "Invalid session id"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(action, params, message):
    with pytest.raises(ActionError, match=message):
        apply_action(action, actor="user:ops", reason="test", **params)
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_each_action_writes_state_and_one_audit_row(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        result = apply_action("force_fallback", actor="user:ops", reason="upstream incident")
    emergency = EmergencyState.load()
    assert (emergency.force_fallback, emergency.force_fallback_reason, emergency.force_fallback_actor) == (
        True,
        "upstream incident",
        "user:ops",
    )
    entry = AuditEntry.objects.get()
    assert (entry.pk, entry.actor, entry.action, entry.reason) == (
        result.audit_id,
        "user:ops",
        "force_fallback",
        "upstream incident",
    )
    assert entry.before == {"force_fallback": False, "emergency_stop": False}
    assert entry.after == {"force_fallback": True, "emergency_stop": False, "version": result.config_version}
    assert len(callbacks) == 1  # the broadcast, sent after commit


@pytest.mark.django_db
def test_rollout_changes_are_audited_but_not_broadcast(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        apply_action("set_rollout_percentage", actor="user:ops", reason="stage 2", percent=12.5)
    assert callbacks == []
    assert AuditEntry.objects.get().after == {"percent": 12.5, "stage": "", "version": 1}


@pytest.mark.django_db
def test_failure_after_the_state_write_rolls_back_state_audit_and_broadcast(
    monkeypatch, django_capture_on_commit_callbacks
):
    version = RolloutConfig.load().version

    def audit_fails(**kwargs):
        assert EmergencyState.objects.get().emergency_stop  # the state was written already
        raise DatabaseError("disk full")

    monkeypatch.setattr(AuditEntry.objects, "create", audit_fails)
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(DatabaseError, match="disk full"):
        stop()
    assert not EmergencyState.load().emergency_stop
    assert RolloutConfig.load().version == version
    assert not AuditEntry.objects.exists()
    assert callbacks == []


@pytest.mark.django_db
def test_resume_clears_both_and_clear_clears_only_the_stop():
    apply_action("force_fallback", actor="user:ops", reason="a")
    stop()
    apply_action("clear_emergency_stop", actor="user:boss", reason="all clear")
    assert (EmergencyState.load().emergency_stop, EmergencyState.load().force_fallback) == (False, True)
    apply_action("resume", actor="user:boss", reason="all clear")
    assert not EmergencyState.load().active


@pytest.mark.django_db
def test_audit_rows_cannot_be_updated_or_deleted():
    stop()
    entry = AuditEntry.objects.get()
    entry.reason = "nothing happened"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="x")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE fallback_auditentry SET reason = 'rewritten'")
    assert AuditEntry.objects.get().reason == "smoke in the server room"


# --- the broadcast -----------------------------------------------------------------------------------


async def _receive_stop(layer, reason: str, send) -> tuple[dict, float]:
    """Join the control group, trigger ``send``, and return the message and its delivery time (s)."""
    channel = await layer.new_channel()
    await layer.group_add(CONTROL_GROUP, channel)

    async def receive() -> tuple[dict, float]:
        while True:
            message = await layer.receive(channel)
            if message.get("reason") == reason:  # ignore other test runs sharing the server
                return message, time.time() - message["sent_at"]

    try:
        receiving = asyncio.ensure_future(receive())  # listening before the action, like a live session
        await send()
        return await asyncio.wait_for(receiving, timeout=10)
    finally:
        await layer.group_discard(CONTROL_GROUP, channel)


@pytest.mark.django_db(transaction=True)
async def test_broadcast_reaches_a_group_member_with_the_in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    reason = f"in-memory {uuid.uuid4()}"
    message, delivery = await _receive_stop(get_channel_layer(), reason, lambda: sync_to_async(stop)(reason))
    assert message["type"] == CONTROL_MESSAGE_TYPE == "control.emergency"
    assert (message["action"], message["emergency_stop"], message["drain_live_sessions"]) == (
        "emergency_stop",
        True,
        True,
    )
    assert message["actor"] == "user:ops"
    print(f"\nin-memory broadcast delivery: {delivery * 1000:.2f} ms")


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_broadcast_from_another_process_reaches_a_member_over_redis(settings, tmp_path):
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
    url = await sync_to_async(fallback_harness.sqlite_database)(tmp_path)
    reason = f"redis {uuid.uuid4()}"

    def other_process():
        return sync_to_async(fallback_harness.run_workers)(url, "stop", 1, arg=reason, env={"REDIS_URL": REDIS_URL})

    message, delivery = await _receive_stop(get_channel_layer(), reason, other_process)
    assert (message["action"], message["actor"], message["emergency_stop"]) == ("emergency_stop", "cli:harness", True)
    print(f"\nRedis broadcast delivery (other process -> this one): {delivery * 1000:.2f} ms")


def test_a_watch_left_by_a_closed_event_loop_does_not_keep_the_next_loops_watch_running():
    async def kiosk_that_never_left():  # its event loop closed under it, as each test's loop does
        watch_emergencies()

    async def kiosk_that_connects_and_leaves():
        watch_emergencies()
        stop_watching_emergencies()
        watches = [task for task in asyncio.all_tasks() if task.get_name() == "emergency-watch"]
        return [task for task in watches if not task.cancelling()]

    asyncio.run(kiosk_that_never_left())
    assert asyncio.run(kiosk_that_connects_and_leaves()) == []  # the last kiosk of this loop left: no watch


# --- commands ------------------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_commands_apply_audited_actions_as_the_os_user(monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    assert "emergency_stop applied" in run("emergency_stop", "--reason", "smoke")
    assert EmergencyState.load().emergency_stop
    assert "clear_emergency_stop applied" in run("emergency_stop", "--reason", "ok", "--clear")
    assert "force_fallback: False -> True" in run("force_fallback", "--reason", "incident")
    assert "resume applied" in run("resume_realtime", "--reason", "fixed")
    assert "percent: None -> 12.5" in run("rollout", "--percent", "12.5", "--reason", "stage 2")
    assert "enabled: None -> True" in run("rollout", "--enable", "--reason", "go")
    assert set(AuditEntry.objects.values_list("actor", flat=True)) == {"cli:alice"}
    assert AuditEntry.objects.count() == 6


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rollout", "--percent", "101", "--reason", "x"], "must be between 0 and 100"),
        (["rollout", "--percent", "half", "--reason", "x"], "must be a number from 0 to 100"),
        (["rollout", "--percent", "5"], "the following arguments are required: --reason"),
        (["rollout", "--reason", "x"], "Give one of --percent, --stage, --enable or --disable"),
        (["rollout", "--stage", "s50", "--reason", "x"], "cannot be skipped"),
        (["emergency_stop", "--reason", " "], "reason is required"),
        (["force_fallback"], "required: --reason"),
    ],
)
def test_commands_validate_their_input(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not AuditEntry.objects.exists()


def config_row() -> dict:
    config = RolloutConfig.load()
    return {field.attname: getattr(config, field.attname) for field in RolloutConfig._meta.concrete_fields}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "before", "after"),
    [
        (["--percent", "100"], {"percent": None, "stage": ""}, {"percent": 100.0, "stage": ""}),
        (["--stage", "s1"], {"percent": None, "stage": ""}, {"percent": 1.0, "stage": "s1"}),
        (
            ["--stage", "s10", "--override"],
            {"percent": None, "stage": ""},
            {"percent": 10.0, "stage": "s10", "override": "stages cannot be skipped (next is s1)"},
        ),
    ],
)
def test_rollout_enable_with_a_share_is_one_audited_change(args, before, after):
    version = RolloutConfig.load().version
    out = run("rollout", "--enable", *args, "--reason", "go")
    assert "enable applied" in out and "enabled: None -> True" in out
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.reason) == ("enable", "go")
    assert entry.before == {"enabled": None, **before}
    assert entry.after == {"enabled": True, **after, "version": version + 1}
    config = RolloutConfig.load()
    assert (config.enabled, config.percent_bp / 100, config.stage, config.version) == (
        True,
        after["percent"],
        after["stage"],
        version + 1,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--disable", "--percent", "0"], "--disable takes no --percent or --stage"),
        (["--disable", "--stage", "s1"], "--disable takes no --percent or --stage"),
        (["--enable", "--disable"], "not allowed with argument --enable"),
        (["--enable", "--percent", "5", "--stage", "s1"], "not allowed with argument --percent"),
        (["--enable", "--percent", "101"], "must be between 0 and 100"),
        (["--enable", "--stage", "s50"], "cannot be skipped"),
        (["--enable", "--override"], "--override goes with --stage only"),
        (["--percent", "5", "--override"], "--override goes with --stage only"),
    ],
)
def test_rollout_refuses_bad_combinations_and_changes_nothing(args, message):
    apply_action("set_rollout_percentage", actor="user:ops", reason="start", percent=0)
    row = config_row()
    with pytest.raises(CommandError, match=message):
        run("rollout", *args, "--reason", "x")
    assert AuditEntry.objects.count() == 1
    assert config_row() == row


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("enable", {"percent": 5, "stage": "s1"}, "enable takes a percent or a stage, not both"),
        ("enable", {"percent": 101}, "Invalid rollout percentage 101"),
        ("enable", {"stage": "s7"}, "Unknown stage 's7'"),
        ("enable", {"cost_limit": 1}, "enable takes no cost_limit"),
        ("disable", {"percent": 5}, "disable takes no percent"),
    ],
)
def test_enable_with_a_bad_share_changes_nothing(action, params, message):
    with pytest.raises(ActionError, match=message):
        apply_action(action, actor="user:ops", reason="test", **params)
    assert not AuditEntry.objects.exists()
    config = RolloutConfig.load()
    assert (config.enabled, config.percent_bp, config.stage, config.version) == (None, None, "", 0)


@pytest.mark.django_db
def test_realtime_status_prints_values_with_sources(settings):
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 5
    apply_action("enable", actor="user:ops", reason="go")
    stop()
    out = run("realtime_status")
    assert "enabled" in out and "[forced]" in out
    assert "percentage           5.0          [env]" in out
    assert "error_rate   closed" in out
    assert "EMERGENCY STOP" in out and "smoke in the server room" in out


# --- admin ---------------------------------------------------------------------------------------------

ADMIN_PAGES = [
    "admin:index",
    "admin:fallback_control",
    "admin:fallback_auditentry_changelist",
    "admin:fallback_guardstate_changelist",
    "admin:fallback_routingdecision_changelist",
    "admin:fallback_fallbackevent_changelist",
    "admin:fallback_allowlistentry_changelist",
    "admin:fallback_emergencystate_changelist",
    "admin:auth_user_changelist",
    "admin:password_change",
]


@pytest.mark.django_db
def test_control_page_shows_config_with_sources_guards_and_audit(admin_client, settings):
    settings.FEATURE_REALTIME_ROLLOUT_PERCENTAGE = 5
    apply_action("enable", actor="user:ops", reason="go live")
    response = admin_client.get(reverse("admin:fallback_control"))
    assert response.status_code == 200
    html = response.content.decode()
    for fragment in ["<td>enabled</td><td><strong>True</strong></td><td>admin</td>", "<td>env</td>", "go live"]:
        assert fragment in html
    assert 'value="emergency_stop"' in html and "error_rate" in html
    assert admin_client.get(reverse("admin:fallback_rolloutconfig_changelist")).url == reverse("admin:fallback_control")


@pytest.mark.django_db
def test_banner_appears_on_every_admin_page_while_an_emergency_is_active(admin_client):
    for name in ADMIN_PAGES:
        assert b"emergency-banner" not in admin_client.get(reverse(name)).content, name
    stop()
    for name in ADMIN_PAGES:
        page = admin_client.get(reverse(name)).content.decode()  # Japanese: the office's language
        assert "緊急停止" in page and "smoke in the server room" in page, name
        english = admin_client.get(reverse(name), HTTP_ACCEPT_LANGUAGE="en")
        assert english.status_code == 200, name
        assert b"EMERGENCY STOP" in english.content and b"smoke in the server room" in english.content, name
    apply_action("resume", actor="user:ops", reason="clear")
    apply_action("force_fallback", actor="user:ops", reason="upstream incident")
    assert "強制フォールバック" in admin_client.get(reverse("admin:index")).content.decode()
    assert b"FORCE FALLBACK" in admin_client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="en").content


@pytest.mark.django_db
def test_simulate_box_explains_without_recording(admin_client):
    apply_action("enable", actor="user:ops", reason="go")
    apply_action("set_rollout_percentage", actor="user:ops", reason="go", percent=50)
    html = admin_client.get(reverse("admin:fallback_control"), {"session_id": "a"}).content.decode()
    assert 'id="simulate-result"' in html
    assert "<strong>realtime</strong> (in_rollout: bucket 2684 &lt; 5000" in html
    html = admin_client.get(reverse("admin:fallback_control"), {"session_id": "kiosk-01:sess-0002"}).content.decode()
    assert "<strong>legacy</strong> (outside_rollout" in html
    assert not RoutingDecision.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data",
    [
        {"action": "emergency_stop", "reason": "", "confirm": "on"},
        {"action": "emergency_stop", "reason": "smoke"},
        {"action": "emergency_stop", "reason": "   ", "confirm": "on"},
    ],
)
def test_emergency_form_requires_a_reason_and_a_confirmation(admin_client, data):
    response = admin_client.post(reverse("admin:fallback_control"), data)
    assert response.status_code == 200
    assert b'id="action-errors"' in response.content
    assert not EmergencyState.load().emergency_stop
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_emergency_form_applies_the_action_as_the_staff_user(admin_client, admin_user):
    url = reverse("admin:fallback_control")
    response = admin_client.post(url, {"action": "emergency_stop", "reason": "smoke", "confirm": "on"})
    assert response.status_code == 302
    assert EmergencyState.load().emergency_stop
    assert AuditEntry.objects.get().actor == f"user:{admin_user.username}"
    data = {"action": "set_rollout_percentage", "reason": "x", "confirm": "on"}
    assert b"This action needs a percentage" in admin_client.post(url, data, HTTP_ACCEPT_LANGUAGE="en").content
    assert "この操作には「割合」が必要です" in admin_client.post(url, data).content.decode()


@pytest.mark.django_db
def test_control_page_enables_with_the_percentage_filled_in_as_one_change(admin_client):
    url = reverse("admin:fallback_control")
    data = {"action": "enable", "percent": "40", "stage": "", "reason": "go", "confirm": "on"}
    assert admin_client.post(url, data).status_code == 302
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.before["enabled"], entry.after) == (
        "enable",
        None,
        {"enabled": True, "percent": 40.0, "stage": "", "version": 1},
    )
    both = {**data, "stage": "s1"}
    assert b"not both" in admin_client.post(url, both, HTTP_ACCEPT_LANGUAGE="en").content
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db
def test_only_a_superuser_clears_an_emergency_stop_and_viewers_cannot_act(client):
    stop()
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_rolloutconfig"))
    client.force_login(staff)
    url = reverse("admin:fallback_control")
    response = client.post(url, {"action": "clear_emergency_stop", "reason": "ok", "confirm": "on"})
    assert "スーパーユーザーのみ" in response.content.decode()
    assert EmergencyState.load().emergency_stop

    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_rolloutconfig"))
    client.force_login(viewer)
    assert client.get(url).status_code == 200
    assert client.post(url, {"action": "resume", "reason": "ok", "confirm": "on"}).status_code == 403
    assert EmergencyState.load().emergency_stop


@pytest.mark.django_db
def test_logs_are_read_only_in_the_admin(admin_client):
    stop()
    entry = AuditEntry.objects.get()
    assert admin_client.get(reverse("admin:fallback_auditentry_change", args=[entry.pk])).status_code == 200
    assert admin_client.get(reverse("admin:fallback_auditentry_delete", args=[entry.pk])).status_code == 403
    assert admin_client.get(reverse("admin:fallback_auditentry_add")).status_code == 403
    assert AuditEntry.objects.count() == 1
