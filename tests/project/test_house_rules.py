"""The house rules `make lint` enforces: rooms within their size, no dead code, layers that point one way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.live_server import REPO
from tools import dead_code, room_sizes


def test_a_long_function_and_a_long_module_are_reported(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    source = tmp_path / "big.py"
    source.write_text(f"def long_one():\n{body}\n" + "\n" * 440)
    problems = room_sizes.oversized(source, 60, 500, root=tmp_path)
    assert problems == ["big.py: module has 502 lines (limit 500)", "big.py:1: long_one() has 62 lines (limit 60)"]


def test_fields_read_by_name_are_not_taken_for_dead_code(tmp_path):
    source = tmp_path / "shapes.py"
    source.write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            class Row(models.Model):
                name = models.CharField()
            class Out(serializers.Serializer):
                items = ItemSerializer(many=True)
            @dataclass
            class Result:
                audit_id: int
            class Plain:
                loose = 3
            """
        )
    )
    assert dead_code.declared_fields(str(source)) == {4, 6, 9}


def test_the_checks_pass_on_the_repository():
    lint_imports = str(Path(sys.executable).parent / "lint-imports")
    for command in ([sys.executable, "tools/room_sizes.py"], [sys.executable, "tools/dead_code.py"], [lint_imports]):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_setting_django_up_leaves_the_workflow_unloaded():
    """Every `manage.py` command and worker process sets Django up; LangGraph (0.9 s of imports) waits for the
    first conversation, so the admin and the commands start in half the time."""
    probe = "import sys, django; django.setup(); print(sorted(m for m in sys.modules if m.startswith('langgraph')))"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "reception_project.settings"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
