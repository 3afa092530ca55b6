"""The servers a test starts stop with it, also when the test fails: a server left running takes the next tests'
cores (and, here, two kiosk-page servers of failed browser tests ran on for hours)."""

from __future__ import annotations

import pytest

from tests.support.kiosk_browser import demo_server


class Failed(Exception):
    pass


def test_the_kiosk_pages_demo_server_stops_when_its_test_fails(tmp_path):
    with pytest.raises(Failed), demo_server(tmp_path, SPEECH_WARM_UP="false") as server:
        assert server.process.poll() is None
        raise Failed
    try:
        assert server.process.poll() is not None
    finally:
        server.stop()  # nothing to do when it stopped; else this test does not leak it in turn
