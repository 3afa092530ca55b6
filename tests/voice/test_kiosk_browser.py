"""The kiosk page in headless Chromium: a visitor who walks away is forgotten, and a finished visit offers the
one-tap rating. (Spoken visitors through the page's fake microphone: test_visitor_stories_browser.py.)"""

from __future__ import annotations

import json

import pytest

from tests.support.kiosk_browser import demo_server, launch_chromium, open_paired_kiosk, write_wav

pytestmark = [pytest.mark.browser, pytest.mark.speech]


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
