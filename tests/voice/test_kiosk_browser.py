"""The kiosk page in headless Chromium with a fake microphone fed from a generated WAV file.

A real daphne process serves the page; the visitor's spoken name must reach the Visit record and
the assistant's voice must come back to the page. A screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from speech.engines import legacy_engines
from tests.support.kiosk_browser import demo_server, launch_chromium, open_paired_kiosk
from tests.support.live_server import REPO

pytestmark = [pytest.mark.browser, pytest.mark.speech]

ARTIFACTS = REPO / "test-artifacts"


def write_wav(path: Path, pcm16: bytes, rate: int = 24000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm16)


@pytest.fixture
def voice_server(tmp_path):
    with demo_server(tmp_path) as server:
        yield server


def test_spoken_name_reaches_the_visit_and_the_page_plays_the_answer(voice_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    speech = legacy_engines().tts.synthesize("株式会社テストの山田太郎です。", "ja")
    silence = bytes(24000 * 2)
    # Speech starts after the greeting has been spoken; then silence so the end of speech is found.
    wav = tmp_path / "visitor.wav"
    write_wav(wav, silence * 6 + speech + silence * 30)

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, wav)
        try:
            page = open_paired_kiosk(browser, voice_server)
            expect(page.locator("#mode-badge")).not_to_be_empty(timeout=20_000)
            expect(page.locator("#field-visitor_name")).to_contain_text("山田", timeout=90_000)
            page.wait_for_function("KioskAudio.playedSeconds() > 1.0", timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "kiosk-voice.png"))
            assert page.locator("#mic-message").is_hidden()
        finally:
            browser.close()

    visits = json.loads(voice_server.manage("export_visits", "--format", "json"))
    assert len(visits) == 1
    assert visits[0]["visitor_name"].replace(" ", "").startswith("山田")


def test_the_page_forgets_a_visitor_who_walked_away_and_starts_fresh(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    wav = tmp_path / "silence.wav"
    write_wav(wav, bytes(24000 * 2))
    # Typed lines: the speech models load at first use (the greeting's voice), not all of them up front.
    with (
        demo_server(tmp_path, KIOSK_IDLE_TIMEOUT_SECONDS="2", SPEECH_WARM_UP="false") as server,
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright, wav)
        try:
            page = open_paired_kiosk(browser, server)
            expect(page.locator("#send")).to_be_enabled(timeout=30_000)  # the greeting is done
            first_session = page.evaluate("sessionStorage.getItem('reception-session')")
            page.locator("#visitor-text").fill("株式会社テストの山田太郎です。")
            page.locator("#send").click()
            expect(page.locator("#field-visitor_name")).to_contain_text("山田", timeout=30_000)
            expect(page.locator("#history")).to_contain_text("山田")

            # The visitor walks away: after the reply and two quiet seconds the screen is cleared.
            expect(page.locator("#field-visitor_name")).to_have_text("—", timeout=30_000)
            page.wait_for_function(
                "(first) => { const now = sessionStorage.getItem('reception-session'); return now && now !== first; }",
                arg=first_session,
                timeout=30_000,
            )
            expect(page.locator("#history")).not_to_contain_text("山田")
            expect(page.locator("#field-company_name")).to_have_text("—")
            expect(page.locator("#send")).to_be_enabled(timeout=30_000)  # the fresh session greeted
        finally:
            browser.close()
        visits = {
            visit["session_id"]: visit for visit in json.loads(server.manage("export_visits", "--format", "json"))
        }

    assert visits[first_session]["status"] == "abandoned"
    assert [visit["status"] for key, visit in visits.items() if key != first_session] == ["collecting"]


def test_a_finished_visit_offers_the_one_tap_rating_and_keeps_it(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    wav = tmp_path / "silence.wav"
    write_wav(wav, bytes(24000 * 2))
    with demo_server(tmp_path, SPEECH_WARM_UP="false") as server, sync_playwright() as playwright:  # typed lines
        browser = launch_chromium(playwright, wav)
        try:
            page = open_paired_kiosk(browser, server)
            expect(page.locator("#send")).to_be_enabled(timeout=30_000)  # the greeting is done
            session_id = page.evaluate("sessionStorage.getItem('reception-session')")
            for line in ("株式会社テストの山田太郎です。鈴木さんと10時にお約束があります。", "はい"):
                expect(page.locator("#feedback")).to_be_hidden()  # only once the visit is finished
                page.locator("#visitor-text").fill(line)
                page.locator("#send").click()
                expect(page.locator("#send")).to_be_enabled(timeout=30_000)
            expect(page.locator("#feedback")).to_be_visible(timeout=30_000)
            expect(page.locator("#feedback")).to_contain_text("よかった")
            page.locator('#feedback [data-rating="3"]').click()
            expect(page.locator("#feedback-thanks")).to_be_visible()
            expect(page.locator("#feedback .rating").first).to_be_hidden()
        finally:
            browser.close()
        read = (
            "from metrics.models import SessionMetric as S; "
            f"print(S.objects.get(session_id='{session_id}').satisfaction)"
        )
        assert server.manage("shell", "-c", read).strip().splitlines()[-1] == "3"
