"""`.env.realtime.template` lists every setting the code reads; paths are absolute; checkpoints share the database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from tests.support.live_server import REPO

TEMPLATE = REPO / ".env.realtime.template"
SOURCE_DIRS = ("reception_project", "core", "speech", "reception", "voice", "realtime", "fallback", "metrics")
# env("X"), env.int("X", ...), env_path("X") in the settings; os.environ.get("X") / os.getenv("X") / a module's
# `..._ENV = "X"` constant anywhere in the project's code.
READS = [
    re.compile(r"\benv\w*(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\""),
    re.compile(r"os\.(?:environ\.get|getenv)\(\s*\"([A-Z][A-Z0-9_]*)\""),
    re.compile(r"^\w+_ENV\s*=\s*\"([A-Z][A-Z0-9_]*)\"", re.M),
]
# Set by the project for its own processes, not settings an operator gives.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "OPEN_JTALK_DICT_DIR"}


def template_entries() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", TEMPLATE.read_text(), re.M))


def settings_read_by_the_code() -> set[str]:
    names = set()
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            if "migrations" not in path.parts:
                names.update(name for pattern in READS for name in pattern.findall(path.read_text()))
    return names - NOT_SETTINGS


def test_the_scan_finds_the_settings_module_reads():
    read = settings_read_by_the_code()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "WORKFLOW_CHECKPOINT_PATH", "SPEECH_WHISPER_MODEL_DIR"} <= read


def test_template_lists_every_setting_the_code_reads():
    missing = settings_read_by_the_code() - set(template_entries())
    assert not missing, f"add to .env.realtime.template: {sorted(missing)}"


def test_template_lists_nothing_the_code_ignores():
    unread = set(template_entries()) - settings_read_by_the_code()
    assert not unread, f"not read by the code: {sorted(unread)}"


def test_template_has_no_relative_path_and_no_built_in_secret():
    entries = template_entries()
    paths = {name: value for name, value in entries.items() if name.endswith(("_PATH", "_DIR", "_FILE"))}
    assert paths and all(not value or value.startswith("/") for value in paths.values()), paths
    assert entries["DATABASE_URL"] in ("", "sqlite:////") or not entries["DATABASE_URL"].startswith("sqlite:///")
    assert entries["DJANGO_SECRET_KEY"] == ""


def test_default_paths_are_absolute():
    assert settings.BASE_DIR.is_absolute()
    for path in (settings.WHISPER_MODEL_DIR, settings.STATIC_ROOT):
        assert str(path).startswith(str(settings.BASE_DIR)), path


def email_settings(email_url: str | None) -> list:
    env = {key: value for key, value in os.environ.items() if key != "EMAIL_URL"}
    if email_url:
        env["EMAIL_URL"] = email_url
    script = (
        "from django.conf import settings as s; import json; "
        "print(json.dumps([s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_TLS]))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_email_url_configures_smtp_and_the_default_prints():
    assert email_settings(None)[0] == "django.core.mail.backends.console.EmailBackend"
    smtp = email_settings("smtp+tls://mailer:p%40ss@smtp.example.com:587")
    assert smtp == ["django.core.mail.backends.smtp.EmailBackend", "smtp.example.com", 587, "p@ss", True]


@pytest.mark.django_db(transaction=True)
def test_checkpoints_live_in_the_sqlite_database_when_no_path_is_set(settings, demo_directory):
    from reception import workflow
    from reception.workflow.checkpoint import get_checkpointer, reset_checkpointer

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only; PostgreSQL keeps checkpoints in its database (test_langgraph_bridge)")
    settings.WORKFLOW_CHECKPOINT_PATH = ""
    reset_checkpointer()
    try:
        workflow.start("same-database-1", "en", None)
        files = [row[2] for row in get_checkpointer().conn.execute("PRAGMA database_list")]
        assert files == [settings.DATABASES["default"]["NAME"]]
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", ["same-database-1"])
            assert cursor.fetchone()[0] > 0
    finally:
        reset_checkpointer()
