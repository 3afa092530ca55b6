"""The short variant of the load test (the long one is `python tests/load_test_realtime.py`)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.live_server import REPO

KEYS = ("sessions_dropped", "turns_sent", "turns_lost", "fallbacks", "errors", "relay_added_ms")


def test_three_kiosks_streaming_audio_for_ten_seconds_lose_no_turn(tmp_path):
    result_path = tmp_path / "load.json"
    command = [sys.executable, "tests/load_test_realtime.py", "--sessions", "3", "--duration", "10"]
    result = subprocess.run(
        [*command, "--think", "0.5", "--json", str(result_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads(result_path.read_text())
    assert all(key in report for key in KEYS), report
    assert {"p50", "p95", "p99"} <= set(report["relay_added_ms"])
    # The microphone streams from session.start, and opening a session takes more than a frame's 20 ms: those
    # first frames are counted apart from the relay's added time.
    assert report["session_opening_wait_ms"]["count"] >= 3, report
    assert report["turns_lost"] == 0 and report["sessions_dropped"] == 0, report
    assert report["turns_sent"] >= 3 and report["sessions_held"] >= 3, report
    # The worker's collections during the run, from its /metrics: some, over a few hundred thousand frames.
    assert report["server_gc"]["all"] > 0 and report["server_gc"]["all"] >= report["server_gc"]["full"], report
