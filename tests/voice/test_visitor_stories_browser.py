"""The two visitor stories that went wrong, spoken into the kiosk page's fake microphone on each voice path.

1. 「株式会社テストの山田太郎です。」, a pause, 「鈴木さんと、十時にお約束があります。」, then 「はい、お願いします。」
   after the read-back: the pause splits the turn, and neither half may be lost (Realtime lost the name), the time
   is a time (Legacy heard 「充実」).
2. A visitor from 株式会社さくら精機 on today's appointments: recognition writes the company 「株式会社作ら星期」 and
   the visitor 仲村, the same readings as what the directory expects.

A real server process serves the page (Realtime through the bundled emulator's reception brain, started as
`make run` starts it); Chromium plays one WAV per story, and the stored visit must hold the right fields, be
finished, and have stayed on its path. The page must also have played the kiosk's answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from realtime.emulator.audio import silence
from tests.support.corpus import Expected, Line, differences
from tests.support.kiosk_browser import demo_server, launch_chromium, new_pairing_link, open_paired_kiosk, write_wav
from tests.support.live_server import REPO, free_port, wait_for_port
from tests.support.spoken import spoken
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.speech]

ARTIFACTS = REPO / "test-artifacts"
GREETING_MS = 5_000  # the visitor starts while the greeting may still play: a barge-in the kiosk must take
READ_BACK_MS = 9_000  # recognition and the workflow have answered; the yes may cut the read-back short
YES = Line("はい、お願いします。")
STORIES = {
    "pause_and_time": (
        Line("株式会社テストの山田太郎です。|鈴木さんと、十時にお約束があります。"),
        Expected("appointment", "host_notified", "山田太郎", "株式会社テスト", "鈴木 花子", "10時のお約束"),
    ),
    "misheard_company": (
        Line("株式会社さくら精機の中村です。|佐藤さんと、十一時にお約束があります。"),
        Expected("appointment", "host_notified", "中村", "株式会社さくら精機", "佐藤 健", "11時のお約束"),
    ),
}
EXPECT_NAKAMURA = (
    "from datetime import timedelta; from django.utils import timezone; "
    "from reception.models import Appointment, StaffMember; "
    "start = timezone.localtime().replace(hour=11, minute=0, second=0, microsecond=0); "
    "Appointment.objects.create(visitor_name='中村 一', visitor_company='株式会社さくら精機', "
    "host=StaffMember.objects.get(name='佐藤 健'), start=start, end=start + timedelta(hours=1), location='会議室D')"
)
VISIT = (
    "import json; from reception.models import Visit; from fallback.models import FallbackEvent; "
    "v = Visit.objects.select_related('host').filter(session_id='{session}').first(); "
    "print(json.dumps(v and {{f: getattr(v, f) for f in ('visitor_type', 'status', 'visitor_name', 'company_name', "
    "'purpose')}} | {{'host': v.host.name if v.host else '', 'fallbacks': list(FallbackEvent.objects.filter("
    "session_id=v.session_id).values_list('reason', flat=True))}}, ensure_ascii=False))"
)


@pytest.fixture(scope="module", params=["legacy", "realtime"])
def kiosk_server(request, tmp_path_factory):
    """A demo server whose sessions all take one path, with 中村 of 株式会社さくら精機 expected at 11:00."""
    directory = tmp_path_factory.mktemp(request.param)
    upstream_port = free_port()
    realtime = request.param == "realtime"
    # The emulator's reception brain recognises and speaks with the local engines, on the cores Chromium and the
    # server share: on a loaded machine its first audio came after the 5 s deadline (a LATENCY fallback, seen in
    # CI). The deadline guards the real service's latency, which this test does not measure.
    slow_upstream = {"REALTIME_FIRST_AUDIO_DEADLINE_SECONDS": "30", "REALTIME_STALL_SECONDS": "30"}
    upstream_url = f"ws://127.0.0.1:{upstream_port}/v1/realtime"
    with demo_server(directory, REALTIME_API_URL=upstream_url, **slow_upstream) as server:
        emulator = (
            server.spawn("realtime_emulator", "--port", str(upstream_port), "--brain", "reception")
            if realtime
            else None
        )
        try:
            if emulator is not None:
                wait_for_port(upstream_port, 60, emulator, server.log)
            server.manage("shell", "-c", EXPECT_NAKAMURA)
            server.manage("rollout", "--enable", "--percent", "100" if realtime else "0", "--reason", "stories")
            server.path = request.param
            yield server
        finally:
            if emulator is not None:
                emulator.terminate()
                emulator.wait(timeout=10)


def story_wav(path: Path, first: Line) -> Path:
    """What the fake microphone plays: the first line once greeted, the yes once it has been read back."""
    speech = silence(GREETING_MS) + spoken(first, "ja") + silence(READ_BACK_MS) + spoken(YES, "ja")
    write_wav(path, speech + silence(20_000))
    return path


def finished_visit(server, session: str) -> SimpleNamespace:
    """The session's visit once the host is notified; the wait fails showing the visit as it stands."""

    def stored() -> dict | None:
        return json.loads(server.manage("shell", "-c", VISIT.format(session=session)).strip().splitlines()[-1])

    finished = lambda: (stored() or {}).get("status") == "host_notified"  # noqa: E731
    wait_until(finished, within=120, interval=1, what=lambda: f"the visit to finish; it is {stored()}")
    fields = stored()
    host = fields.pop("host")
    return SimpleNamespace(**fields, host=SimpleNamespace(name=host) if host else None)


@pytest.mark.parametrize("story", STORIES)
def test_the_visitor_story_completes_in_the_kiosk_page(kiosk_server, tmp_path, story):
    from playwright.sync_api import expect, sync_playwright

    first, expected = STORIES[story]
    new_pairing_link(kiosk_server)  # a pairing link pairs one browser only
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, story_wav(tmp_path / "visitor.wav", first))
        try:
            page = open_paired_kiosk(browser, kiosk_server)
            # Conditions are read with evaluate: polling a string in the page is eval, which its CSP refuses.
            expect(page.locator("main")).to_have_attribute("data-mode", kiosk_server.path, timeout=30_000)
            session = page.evaluate("sessionStorage.getItem('reception-session')")
            visit = finished_visit(kiosk_server, session)
            wait_until(lambda: page.evaluate("KioskAudio.playedSeconds()") > 3.0, within=30)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"kiosk-{kiosk_server.path}-{story}.png"))
        finally:
            browser.close()
    assert differences(visit, expected) == [], vars(visit)
    assert visit.fallbacks == []  # the whole visit on the path it started on
