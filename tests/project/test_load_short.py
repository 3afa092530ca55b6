"""The short variant of the load test (the long one is `python tests/load_test_realtime.py`)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.live_server import REPO


def test_five_kiosks_for_ten_seconds_complete_conversations_without_errors():
    result = subprocess.run(
        [sys.executable, "tests/load_test_realtime.py", "--sessions", "5", "--duration", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    conversations = int(re.search(r"conversations=(\d+)", result.stdout).group(1))
    assert conversations >= 5
    assert "errors=0 fallbacks=0 lost_turns=0" in result.stdout
