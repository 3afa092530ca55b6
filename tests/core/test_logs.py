"""Logs safe to ship: JSON lines with session and kiosk, one redaction filter everywhere, no secret anywhere."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from core.logs import SafeLogFilter, redact
from reception.models import Kiosk, KioskPairing
from tests.support.kiosk_client import collect_turn, connect

SENTINEL_KEY = "sk-proj-SENTINELkey0123456789abcdefXYZ"
SENTINEL_NAME = "Zebulon Quartzfield"


def all_handlers() -> list[tuple[str, logging.Handler]]:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.Logger.manager.loggerDict)]
    return [(logger.name, handler) for logger in loggers for handler in getattr(logger, "handlers", [])]


def test_every_configured_handler_has_the_redaction_filter():
    configured = [
        (name, handler)
        for name, handler in all_handlers()
        # pytest's own capture handlers, and libraries' NullHandlers (which write nothing), aside
        if not type(handler).__module__.startswith("_pytest") and not isinstance(handler, logging.NullHandler)
    ]
    assert configured, "no handler configured"
    for name, handler in configured:
        assert any(isinstance(f, SafeLogFilter) for f in handler.filters), (name, handler)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"upstream said: Incorrect API key provided: {SENTINEL_KEY}", SENTINEL_KEY),
        ("headers {'Authorization': 'Bearer kiosk-key-abc.DEF_123'}", "kiosk-key-abc.DEF_123"),
        ("cookie: kiosk_device=Dev1ceT0kenValue", "Dev1ceT0kenValue"),
        ("GET /kiosk/pair/Pa1rTokenXyz/ 400", "Pa1rTokenXyz"),
        ("postgres://reception:Hunter2pw@db:5432/reception", "Hunter2pw"),
        ('{"type": "input_audio_buffer.append", "audio": "UklGRiQAAABXQVZF', "UklGRiQAAABXQVZF"),
        ("payload " + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk" * 3, "QUJDREVGR0hJSktMTU5PUFFS"),
        (repr(b"\x00\x01\x02\x03" * 10), "\\x00\\x01"),
    ],
)
def test_redaction(text, secret):
    assert secret not in redact(text)


def test_session_ids_and_ordinary_words_survive_redaction():
    text = "session 3f2a9c0e4b5d6f718293a4b5c6d7e8f9 ended (idle), visit 12 marked ENDED"
    assert redact(text) == text


@pytest.fixture
def log_lines(settings):
    """Everything the configured console handler writes, at DEBUG, as JSON lines."""
    settings.OPENAI_API_KEY = SENTINEL_KEY
    handler = next(h for name, h in all_handlers() if name == "root" and isinstance(h, logging.StreamHandler))
    buffer = io.StringIO()
    previous_stream, root = handler.setStream(buffer), logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.setLevel(previous_level)
        handler.setStream(previous_stream)


async def drive_conversation(kiosk_key: str, other_key: str) -> tuple[list[dict], list[dict]]:
    """A visitor on one kiosk gives the sentinel name and confirms; returns (this kiosk's, the other's) frames."""
    other = await connect(other_key)
    await other.send_json_to({"type": "session.start", "language": "en"})
    other_frames, _ = await collect_turn(other)
    ws = await connect(kiosk_key)
    await ws.send_json_to({"type": "session.start", "language": "en"})
    frames, _ = await collect_turn(ws)
    await ws.send_json_to({"type": "input_text", "text": f"Hi, I'm {SENTINEL_NAME} from Acme Corp, to see Mr. Tanaka."})
    frames += (await collect_turn(ws))[0]
    await ws.send_json_to({"type": "input_text", "text": "Yes"})
    frames += (await collect_turn(ws))[0]
    await ws.disconnect()
    while not await other.receive_nothing(timeout=0.2):
        other_frames.append(json.loads((await other.receive_output())["text"]))
    await other.disconnect()
    return frames, other_frames


def kiosk_keys() -> tuple[str, str]:
    keys = []
    for name in ("lobby A", "lobby B"):
        kiosk = Kiosk(name=name)
        keys.append(kiosk.set_new_key())
        kiosk.save()
    return keys[0], keys[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state")
@pytest.mark.parametrize("detailed", [False, True])
async def test_sentinels_reach_no_log_line_response_or_other_kiosk(
    demo_directory, log_lines, settings, async_client, detailed
):
    from asgiref.sync import sync_to_async

    settings.REALTIME_ENABLE_DETAILED_LOGGING = detailed
    key, other_key = await sync_to_async(kiosk_keys)()
    frames, other_frames = await drive_conversation(key, other_key)
    assert any(f.get("visitor_name") == SENTINEL_NAME for f in frames)  # the name was understood

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert any(line.get("session_id") and line.get("kiosk_id") for line in lines)  # context on the lines
    text = log_lines.getvalue()
    # With detailed logging on, the same scan finds the name: the logs do carry conversations when asked to.
    assert (SENTINEL_NAME in text) is detailed
    for secret in (SENTINEL_KEY, key, other_key):
        assert secret not in text
    assert SENTINEL_NAME not in json.dumps(other_frames, ensure_ascii=False)

    responses = await sync_to_async(http_pages)(SENTINEL_KEY)
    for url, body in responses:
        assert SENTINEL_KEY not in body, url


def http_pages(secret: str) -> list[tuple[str, str]]:
    """The operations API, admin and error pages as staff see them."""
    from django.test import Client

    client = Client(raise_request_exception=False)
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(staff)
    urls = [
        "/api/v1/realtime/status",
        "/api/v1/realtime/metrics",
        "/api/v1/realtime/health-check",
        "/api/v1/realtime/cost-status",
        "/api/v1/realtime/fallback-status",
        "/api/v1/schema",
        "/metrics",
        reverse("admin:index"),
        reverse("admin:reception_visit_changelist"),
        reverse("admin:metrics_metricsdashboard_changelist"),
        "/no-such-page/",
        reverse("voice:pair", args=["not-a-token"]),
    ]
    pages = [(url, client.get(url, follow=True).content.decode()) for url in urls]
    _, token = KioskPairing.create_link(Kiosk.objects.first())
    pages.append(("pair", client.post(reverse("voice:pair", args=[token])).content.decode()))
    return pages
