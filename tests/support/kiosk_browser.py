"""The kiosk page in headless Chromium: a demo server on a fresh database, a browser with a fake microphone,
and a kiosk paired through its pairing link."""

from __future__ import annotations

import re
import shutil
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.live_server import LiveServer, migrate, throwaway_database

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def demo_server(tmp_path: Path, **env: str) -> Iterator[LiveServer]:
    with throwaway_database("sqlite", tmp_path) as database_url:
        server = LiveServer(database_url, tmp_path, {"SPEECH_WARM_UP": "true", **env})
        migrate(database_url)
        new_pairing_link(server)
        server.start()
        try:
            yield server
        finally:  # a failing test (no browser, a timeout) must not leave its server running for the next
            server.stop()
            print(server.log.read_text()[-4000:])  # shown when the test fails


def new_pairing_link(server: LiveServer) -> str:
    """A fresh one-use pairing link for the demo kiosk (seeding again adds one), kept as `server.pairing_url`."""
    seeded = server.manage("seed_demo", "--base-url", f"http://127.0.0.1:{server.port}")
    server.pairing_url = re.search(r"(http://\S+/kiosk/pair/\S+/)", seeded).group(1)
    return server.pairing_url


def write_wav(path: Path, pcm16: bytes, rate: int = 24000) -> None:
    """PCM16 mono as a WAV file, for the fake microphone."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm16)


def launch_chromium(playwright, wav: Path | None = None):
    """Headless Chromium with a fake microphone (playing `wav` once, when given)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            *([f"--use-file-for-fake-audio-capture={wav}%noloop"] if wav else []),
            "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking",
            "--disable-component-update",
        ],
    )


def open_paired_kiosk(browser, server: LiveServer):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.pairing_url)
    page.get_by_role("button").click()
    page.wait_for_url(re.compile(r"/kiosk/$"))
    return page
