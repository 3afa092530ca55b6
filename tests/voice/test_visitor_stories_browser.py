"""The two visitor stories that went wrong, spoken into the kiosk page's fake microphone on each voice path.

1. 「株式会社テストの山田太郎です。」, a pause, 「鈴木さんと、十時にお約束があります。」, then 「はい、お願いします。」
   after the read-back: the pause splits the turn, and neither half may be lost (Realtime lost the name), the time
   is a time (Legacy heard 「充実」).
2. A visitor from 株式会社さくら精機 on today's appointments: recognition writes the company 「株式会社作ら星期」 and
   the visitor 仲村, the same readings as what the directory expects.

A real daphne process serves the page (Realtime through the bundled emulator's reception brain, started as
`make run` starts it); Chromium plays one WAV per story with silence where the kiosk speaks, and the stored visit
must hold the right fields and be finished.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from realtime.emulator.audio import silence
from tests.support.corpus import Expected, Line, differences
from tests.support.kiosk_browser import demo_server, launch_chromium, open_paired_kiosk
from tests.support.live_server import free_port, wait_for_port
from tests.support.spoken import spoken
from tests.voice.test_kiosk_browser import write_wav

pytestmark = [pytest.mark.browser, pytest.mark.speech]

GREETING_SECONDS = 9  # the kiosk greets before the visitor speaks
READ_BACK_SECONDS = 16  # recognition, the read-back of every field, and a margin on a loaded machine
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
LAST_VISIT = (
    "import json; from reception.models import Visit; from fallback.models import FallbackEvent; "
    "v = Visit.objects.select_related('host').latest('id'); "
    "print(json.dumps({f: getattr(v, f) for f in ('visitor_type', 'status', 'visitor_name', 'company_name', "
    "'purpose')} | {'host': v.host.name if v.host else '', "
    "'fallbacks': list(FallbackEvent.objects.filter(session_id=v.session_id).values_list('reason', flat=True))}, "
    "ensure_ascii=False))"
)


def story_wav(path: Path, first: Line) -> Path:
    """What the fake microphone plays: quiet while greeted, the first line, quiet for the read-back, the yes."""
    speech = silence(GREETING_SECONDS * 1000) + spoken(first, "ja")
    write_wav(path, speech + silence(READ_BACK_SECONDS * 1000) + spoken(YES, "ja") + silence(20_000))
    return path


def stored_visit(server, within: float = 150.0) -> SimpleNamespace:
    """The kiosk's visit once it is finished (or as it stands when `within` runs out)."""
    deadline = time.monotonic() + within
    while True:
        fields = json.loads(server.manage("shell", "-c", LAST_VISIT).strip().splitlines()[-1])
        if fields["status"] == "host_notified" or time.monotonic() > deadline:
            host = SimpleNamespace(name=fields.pop("host")) if fields["host"] else None
            return SimpleNamespace(**fields, host=host)
        time.sleep(1)


@pytest.mark.parametrize("path", ["legacy", "realtime"])
@pytest.mark.parametrize("story", STORIES)
def test_the_visitor_story_completes_in_the_kiosk_page(tmp_path, path, story):
    from playwright.sync_api import sync_playwright

    first, expected = STORIES[story]
    wav = story_wav(tmp_path / "visitor.wav", first)
    upstream_port = free_port()
    with demo_server(tmp_path, REALTIME_API_URL=f"ws://127.0.0.1:{upstream_port}/v1/realtime") as server:
        emulator = server.spawn("realtime_emulator", "--port", str(upstream_port), "--brain", "reception")
        try:
            wait_for_port(upstream_port, 60, emulator, server.log)
            server.manage("shell", "-c", EXPECT_NAKAMURA)
            server.manage("rollout", "--enable", "--percent", "100" if path == "realtime" else "0", "--reason", "t")
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright, wav)
                try:
                    page = open_paired_kiosk(browser, server)
                    page.wait_for_function(f"document.querySelector('main').dataset.mode === '{path}'")
                    visit = stored_visit(server)
                finally:
                    browser.close()
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
    assert differences(visit, expected) == [], vars(visit)
    assert visit.fallbacks == []  # the whole visit on the path it started on
