"""The operations dashboard and the session detail page: numbers for staff, transcripts only with the permission."""

from __future__ import annotations

import shutil
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from fallback import guards
from fallback.models import FallbackEvent
from metrics.models import AlertState, SessionMetric, TurnMetric
from tests.support.live_server import REPO

pytestmark = pytest.mark.usefixtures("reference_prices")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TRANSCRIPT = [{"role": "visitor", "text": "山田商事の山田です"}, {"role": "assistant", "text": "ご用件をどうぞ"}]


@pytest.fixture
def viewer():
    """Staff who may view the metrics, without the personal-data permission."""
    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="metrics", codename__startswith="view_")
    )
    user.user_permissions.remove(Permission.objects.get(codename="view_personal_data"))
    return user


@pytest.fixture
def recorded(monkeypatch):
    now = timezone.now()
    for i, (mode, outcome) in enumerate([("realtime", "completed"), ("realtime", "error"), ("legacy", "completed")]):
        SessionMetric.objects.create(
            session_id=f"s{i}",
            started_at=now - timedelta(minutes=i),
            ended_at=now,
            mode=mode,
            outcome=outcome,
            paths=mode,
            turns=2,
            cost_usd=Decimal("0.04"),
            visitor_turns=3 + i,
            reasks=i,
            satisfaction=3 - i,
        )
    for i in range(12):
        path = "realtime" if i % 3 else "legacy"
        TurnMetric.objects.create(
            event_id=f"t{i}",
            session_id=f"s{i % 3}",
            occurred_at=now - timedelta(minutes=i * 4),
            path=path,
            ttfa_ms=400 + 90 * i,
            upstream_ms=300 + 50 * i,
            server_ms=40 + i,
            cost_usd=Decimal("0.01") * (i + 1),
            ok=i != 5,
        )
    FallbackEvent.objects.create(session_id="s1", reason="UPSTREAM_ERROR")
    FallbackEvent.objects.create(session_id="s0", reason="LATENCY")
    guards.record_cost(Decimal("0.42"), 1e9)
    monkeypatch.setattr("metrics.admin.session_transcript", lambda session_id: TRANSCRIPT)


@pytest.mark.django_db
def test_dashboard_for_staff_shows_both_paths_and_every_window(client, viewer, recorded):
    client.force_login(viewer)
    url = reverse("admin:metrics_metricsdashboard_changelist")
    assert url in client.get(reverse("admin:index")).content.decode()  # linked from the admin index
    for window in ("hour", "day", "week"):
        response = client.get(url, {"window": window})
        assert response.status_code == 200
        page = response.content.decode()
        assert 'id="side-by-side"' in page and "vendor/chartjs/chart.umd.min.js" in page
        assert response.context["summary"]["paths"]["realtime"]["started"] == 2
    assert "cdn" not in page.lower()


@pytest.mark.django_db
def test_dashboard_compares_conversation_quality_per_path(client, viewer, recorded):
    client.force_login(viewer)
    response = client.get(reverse("admin:metrics_metricsdashboard_changelist"), HTTP_ACCEPT_LANGUAGE="ja")
    rt = response.context["summary"]["paths"]["realtime"]
    assert (rt["mean_turns_to_complete"], rt["reasks"], rt["rated"], rt["mean_satisfaction"]) == (3.0, 1, 2, 2.5)
    page = response.content.decode()
    assert "完了までの訪問者の発話数（平均）" in page and "満足度" in page


@pytest.mark.django_db
def test_dashboard_speaks_japanese_by_default_and_english_on_request(client, viewer, recorded):
    client.force_login(viewer)
    url = reverse("admin:metrics_metricsdashboard_changelist")
    japanese = client.get(url).content.decode()
    assert "最初の音声までの時間" in japanese and "Time to first audio" not in japanese
    assert "Time to first audio" in client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()


@pytest.mark.django_db
def test_dashboard_is_staff_only(client, recorded):
    user = get_user_model().objects.create_user("visitor", "x@example.com", "pw")
    client.force_login(user)
    response = client.get(reverse("admin:metrics_metricsdashboard_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_session_detail_hides_the_transcript_without_the_permission(client, viewer, recorded):
    client.force_login(viewer)
    page = client.get(
        reverse("admin:metrics_sessionmetric_change", args=[SessionMetric.objects.get(session_id="s0").pk])
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="session-turns"' in text and 'id="transcript-hidden"' in text
    assert "山田商事" not in text


@pytest.mark.django_db
def test_session_detail_shows_the_transcript_with_the_permission(client, viewer, recorded):
    viewer.user_permissions.add(Permission.objects.get(codename="view_personal_data"))
    client.force_login(viewer)
    page = client.get(
        reverse("admin:metrics_sessionmetric_change", args=[SessionMetric.objects.get(session_id="s0").pk])
    )
    text = page.content.decode()
    assert 'id="transcript"' in text and "山田商事の山田です" in text and "ご用件をどうぞ" in text


@pytest.mark.django_db
def test_transcript_is_read_from_the_workflow_checkpoint(isolated_workflow_state, demo_directory):
    from metrics.admin import session_transcript
    from reception import workflow

    workflow.start("kiosk-s1", "ja", None)
    workflow.handle_text("kiosk-s1", "山田商事の山田です")
    messages = session_transcript("kiosk-s1")
    assert any(m["role"] == "visitor" and "山田商事" in m["text"] for m in messages)
    assert session_transcript("never-seen") is None


@pytest.mark.django_db
def test_alert_banner_on_every_admin_page(client, viewer):
    AlertState.objects.create(name="cost", active=True, message="Realtime spend 45.00 USD", raised_at=timezone.now())
    client.force_login(viewer)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'id="metrics-alert-banner"' in page and "Realtime spend 45.00 USD" in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_charts_draw_in_headless_chromium(live_server, client, viewer, recorded):
    from playwright.sync_api import sync_playwright

    client.force_login(viewer)
    cookie = client.cookies["sessionid"].value
    artifact = REPO / "test-artifacts" / "dashboard.png"
    artifact.parent.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1800})
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": live_server.url}])
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live_server.url + reverse("admin:metrics_metricsdashboard_changelist") + "?window=day")
            try:
                page.wait_for_function("document.body.dataset.chartsDrawn === 'true'", timeout=15_000)
            except Exception:
                pytest.fail(f"charts not drawn at {page.url}: {errors} {page.content()[:3000]}")
            drawn = page.evaluate(
                """() => [...document.querySelectorAll('canvas')].map(c => ({
                    id: c.id, chart: !!Chart.getChart(c), width: c.width,
                    ink: c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                        .some((v, i) => i % 4 === 3 && v > 0),
                }))"""
            )
            page.screenshot(path=str(artifact), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert len(drawn) == 5
    assert all(c["chart"] and c["width"] > 0 and c["ink"] for c in drawn), drawn
    assert artifact.stat().st_size > 10_000
