"""Rate limits: the kiosk socket through the real consumer, the API throttles, the admin login lockout."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from metrics.models import ApiToken
from metrics.refusals import refusal_counts
from reception.models import Kiosk
from reception_project.asgi import application
from tests.support import waiting
from voice.hybrid import HybridVoiceManager
from voice.rate_limits import KioskRateLimits, Limits, RateLimited, SharedBudget

pytestmark = pytest.mark.rate_limits  # these tests keep the kiosk rate limits (see tests/conftest.py)

CANCEL = json.dumps({"type": "response.cancel"})  # valid, and answered with nothing: only refusals come back
CHUNK = b"\x00\x00" * 2400  # 100 ms of silence, PCM16 24 kHz


def communicator(key: str, address: str = "198.51.100.7") -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/kiosk/", headers=[(b"authorization", f"Bearer {key}".encode())])
    ws.scope["client"] = (address, 40000)
    return ws


async def new_kiosk(name: str) -> str:
    kiosk = Kiosk(name=name)
    key = kiosk.set_new_key()
    await kiosk.asave()
    return key


async def started(key: str, **kwargs) -> WebsocketCommunicator:
    ws = communicator(key, **kwargs)
    connected, _ = await ws.connect()
    assert connected
    await ws.send_json_to({"type": "session.start", "language": "en"})
    await until(ws, lambda m: m.get("type") == "response.done")
    return ws


async def until(ws: WebsocketCommunicator, done) -> list[dict]:
    """Text messages up to and including the one `done` accepts (audio is skipped)."""
    seen = []
    while True:
        output = await ws.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            raise AssertionError(f"closed {output} after {seen}")
        if output.get("text") is None:
            continue
        seen.append(json.loads(output["text"]))
        if done(seen[-1]):
            return seen


async def drain_until_close(ws: WebsocketCommunicator) -> tuple[list[dict], dict]:
    messages = []
    while True:
        output = await ws.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            return messages, output
        if output.get("text") is not None:
            messages.append(json.loads(output["text"]))


async def flood_until_closed(ws: WebsocketCommunicator) -> None:
    """Send frames past the (lowered) limits until the kiosk is closed with 4429."""
    for _ in range(20):
        await ws.send_to(text_data=CANCEL)
    assert (await drain_until_close(ws))[1]["code"] == 4429
    await ws.disconnect()


async def answered(ws: WebsocketCommunicator) -> list[dict]:
    """Every text message the frames sent so far got: the server reads a connection's frames in order, so the answer
    to a marker sent after them (`unknown_type`) comes after theirs, however long the server took over them."""
    await ws.send_json_to({"type": "test.marker"})
    return (await until(ws, lambda m: m.get("code") == "unknown_type"))[:-1]


async def drain_quiet(ws: WebsocketCommunicator) -> list[dict]:
    """Every text message until nothing more comes, for a kiosk that would be refused a marker (see `answered`)."""
    messages = []
    while not await ws.receive_nothing(timeout=0.3):
        output = await ws.receive_output(timeout=1)
        assert output["type"] != "websocket.close", (output, messages)
        if output.get("text") is not None:
            messages.append(json.loads(output["text"]))
    return messages


async def counts_reach(limit: str, expected: int) -> bool:
    """Whether the shared count of `limit` reaches `expected` within 5 s (refusals are counted in the background)."""
    await waiting.until(
        lambda: refusal_counts()[limit] >= expected, within=5, what=f"{expected} refusals counted as {limit!r}"
    )
    return refusal_counts()[limit] == expected


async def say(ws: WebsocketCommunicator, text: str) -> list[dict]:
    await ws.send_json_to({"type": "input_text", "text": text})
    return await until(ws, lambda m: m["type"] in ("response.done", "error"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_a_text_flood_is_refused_frame_by_frame_then_closed_with_4429(settings):
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 20
    settings.KIOSK_RATE_FLOOD_REFUSALS = 30
    ws = await started(await new_kiosk("flooder"))
    for _ in range(300):
        await ws.send_to(text_data=CANCEL)
    messages, close = await drain_until_close(ws)
    assert close["code"] == 4429
    assert messages and all(m["type"] == "error" and m["code"] == "rate_limited" for m in messages)
    # The 31st refusal within the window closes; frames still queued after the close are not read.
    assert len(messages) == 31
    assert await ws.receive_nothing(timeout=0.2)
    counts = refusal_counts()
    assert counts["messages"] == 31 and counts["flood_closed"] == 1
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_a_kiosk_closed_for_flooding_is_refused_at_the_handshake_until_the_window_passes(settings):
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 5
    settings.KIOSK_RATE_FLOOD_REFUSALS = 3
    settings.KIOSK_RATE_FLOOD_WINDOW_SECONDS = 1
    settings.KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE = 3
    key = await new_kiosk("flooder")
    ws = await started(key)
    await flood_until_closed(ws)
    for _ in range(3):  # more attempts than the connection budget: none of them open a socket or spend it
        again = communicator(key)
        connected, _ = await again.connect()
        assert not connected  # closed before accept: the server answers the handshake with HTTP 403
        await again.disconnect()
    assert await counts_reach("flooding", 3) and refusal_counts()["kiosk_connects"] == 0

    async def welcome() -> WebsocketCommunicator | None:
        again = communicator(key)
        connected, _ = await again.connect()
        if connected:
            return again
        await again.disconnect()
        return None

    again = await waiting.until(welcome, within=5, interval=0.1, what="the kiosk welcome again after the flood window")
    await again.send_json_to({"type": "session.start", "language": "en"})
    await until(again, lambda m: m.get("type") == "response.done")
    await again.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_a_locked_out_flooder_does_not_use_up_the_budget_of_its_neighbours(settings):
    """Kiosks behind one NAT address share its connection budget; a flooder's refused retries spend none of it."""
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 5
    settings.KIOSK_RATE_FLOOD_REFUSALS = 3
    settings.KIOSK_RATE_FLOOD_WINDOW_SECONDS = 60
    settings.KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE = 4
    flooder, neighbour = await new_kiosk("flooder"), await new_kiosk("neighbour")
    ws = await started(flooder)  # 1 of the address's 4
    await flood_until_closed(ws)
    for _ in range(10):  # locked out: refused at the handshake, the address's budget untouched
        again = communicator(flooder)
        assert not (await again.connect())[0]
        await again.disconnect()
    for _ in range(3):  # the other kiosks behind the address still get its 3 remaining connections
        await (await started(neighbour)).disconnect()
    refused = communicator(neighbour)
    connected, _ = await refused.connect()
    assert connected  # accepted to say why, then closed
    assert (await drain_until_close(refused))[1]["code"] == 4429
    assert await counts_reach("address_connects", 1)
    await refused.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_audio_faster_than_real_time_is_refused_and_the_socket_stays_usable(settings):
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 1000  # only the audio pace is under test
    ws = await started(await new_kiosk("fast talker"))
    for _ in range(100):  # 10 s of audio at once; 1.5 x real time over 2 s lets 3 s of it through
        await ws.send_to(bytes_data=CHUNK)
    refusals = await answered(ws)
    assert refusals and {(m["type"], m["code"]) for m in refusals} == {("error", "rate_limited")}
    accepted = 100 - len(refusals)
    assert 30 <= accepted <= 45, accepted  # the burst, plus what the sliding window lets in at a boundary
    assert await counts_reach("audio", len(refusals)) and refusal_counts()["flood_closed"] == 0
    turn = await say(ws, "My name is Jane Doe")
    assert [m for m in turn if m["type"] == "visit.updated"][-1]["visitor_name"] == "Jane Doe"
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_audio_streamed_while_the_session_opens_is_not_taken_for_a_flood(settings, monkeypatch):
    """The kiosk page streams its microphone from session.start on; a session that takes 3 s to open (a slow
    upstream handshake) finds 3 s of frames queued, read in one burst."""
    opening = HybridVoiceManager.open

    async def slow_open(self, kiosk_id):
        await asyncio.sleep(3)
        await opening(self, kiosk_id)

    monkeypatch.setattr(HybridVoiceManager, "open", slow_open)
    ws = communicator(await new_kiosk("early talker"))
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "session.start", "language": "en"})
    for _ in range(150):  # 20 ms frames, as the page sends them, while the session opens
        await ws.send_to(bytes_data=CHUNK[:960])
        await asyncio.sleep(0.02)
    messages = await until(ws, lambda m: m.get("type") == "response.done")  # the greeting
    messages += await answered(ws)
    assert not [m for m in messages if m["type"] == "error"], messages
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_audio_that_queued_while_the_event_loop_stood_still_is_not_taken_for_a_flood(settings):
    """The server's event loop stands still for 1.5 s while the kiosk streams on: the 75 frames of that time are
    read in one burst afterwards, but they came at the kiosk's pace."""
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 60  # above the 50 frames/s of real-time audio, below the burst
    ws = await started(await new_kiosk("steady talker"))
    for _ in range(50):
        await ws.send_to(bytes_data=CHUNK[:960])
        await asyncio.sleep(0.02)
    time.sleep(1.5)  # noqa: ASYNC251 - the loop stands still; the kiosk's frames of that time arrive after
    for _ in range(75):
        await ws.send_to(bytes_data=CHUNK[:960])
    for _ in range(50):
        await ws.send_to(bytes_data=CHUNK[:960])
        await asyncio.sleep(0.02)
    assert not [m for m in await answered(ws) if m["type"] == "error"]
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_another_kiosk_talks_normally_while_one_floods(settings):
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 20
    settings.KIOSK_RATE_FLOOD_REFUSALS = 1000
    flooder = await started(await new_kiosk("flooder"))
    visitor = await started(await new_kiosk("calm"))  # same client address, too
    for _ in range(200):
        await flooder.send_to(text_data=CANCEL)
        await flooder.send_to(bytes_data=CHUNK)
    turn = await say(visitor, "My name is Jane Doe")
    assert not [m for m in turn if m["type"] == "error"]
    assert [m for m in turn if m["type"] == "visit.updated"][-1]["visitor_name"] == "Jane Doe"
    await visitor.send_to(bytes_data=CHUNK)
    assert await visitor.receive_nothing(timeout=0.3)  # its audio is accepted: no refusal
    assert {m["code"] for m in await drain_quiet(flooder)} == {"rate_limited"}
    await flooder.disconnect()
    await visitor.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_new_connections_per_kiosk_are_limited(settings):
    settings.KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE = 3
    key, other = await new_kiosk("reconnects"), await new_kiosk("other")
    for _ in range(3):
        ws = communicator(key)
        assert (await ws.connect())[0]
        await ws.disconnect()
    ws = communicator(key)
    await ws.connect()  # accepted only to say why
    assert (await ws.receive_json_from(timeout=10))["code"] == "rate_limited"
    assert (await ws.receive_output(timeout=10))["code"] == 4429
    assert refusal_counts()["kiosk_connects"] == 1
    ws = communicator(other)  # the same address, another kiosk: let in
    assert (await ws.connect())[0]
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_new_connections_per_address_are_limited_before_authentication(settings):
    settings.KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE = 5
    keys = [await new_kiosk(f"lobby {n}") for n in range(6)]
    for key in keys[:5]:
        ws = communicator(key, address="203.0.113.9")
        assert (await ws.connect())[0]
        await ws.disconnect()
    for key in (keys[5], "not-a-key"):  # a sixth kiosk behind the same address, and a key guesser
        ws = communicator(key, address="203.0.113.9")
        await ws.connect()
        assert (await ws.receive_json_from(timeout=10))["code"] == "rate_limited"
        assert (await ws.receive_output(timeout=10))["code"] == 4429
    ws = communicator(keys[5], address="203.0.113.10")  # another address is not affected
    assert (await ws.connect())[0]
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()
    assert refusal_counts()["address_connects"] == 2


def test_default_address_limit_lets_a_lobby_of_100_kiosks_reconnect_together(settings):
    limits = Limits.from_settings()
    assert limits.address_connects.amount >= 100 * 5  # every kiosk may reconnect five times in a minute
    assert limits.audio_bytes.amount / limits.audio_bytes.get_expiry() == pytest.approx(48_000 * 1.5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_workflow_state", "demo_directory")
async def test_a_third_connection_of_a_kiosk_closes_the_oldest(settings):
    assert settings.KIOSK_MAX_CONNECTIONS_PER_KIOSK == 2
    key = await new_kiosk("one screen")
    first = await started(key)
    second = await started(key)  # a reconnect while the old socket is not yet closed: both live
    assert await first.receive_nothing(timeout=0.2)
    third = await started(key)
    messages, close = await drain_until_close(first)
    assert close["code"] == 4409 and messages[-1]["code"] == "replaced"
    assert await second.receive_nothing(timeout=0.2)
    await first.disconnect()
    await second.disconnect()  # gone: the next connection does not close the third
    fourth = await started(key)
    assert await third.receive_nothing(timeout=0.2)
    turn = await say(third, "My name is Jane Doe")
    assert not [m for m in turn if m["type"] == "error"]
    await third.disconnect()
    await fourth.disconnect()


@pytest.mark.redis
async def test_two_limiters_over_redis_share_one_counter(settings):
    """Two server processes each have their own limiter and Redis connection; a kiosk's budget is one."""
    settings.REDIS_URL = "redis://127.0.0.1:6379/13"
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 10
    kiosk = Kiosk(pk=1, key_hash=uuid.uuid4().hex)
    here = KioskRateLimits()
    assert isinstance(here.limiter.storage, RedisStorage)
    await here.kiosk_connect(kiosk)

    def other_process() -> None:
        async def hits() -> None:
            there = KioskRateLimits()  # another event loop: its own Redis connection
            assert there.limiter.storage is not here.limiter.storage
            await there.kiosk_connect(kiosk)
            for _ in range(6):
                await there.message()

        asyncio.run(hits())

    thread = threading.Thread(target=other_process)
    thread.start()
    thread.join(timeout=10)
    for _ in range(4):
        await here.message()
    with pytest.raises(RateLimited) as refused:
        await here.message()
    assert refused.value.code == "rate_limited" and refused.value.limit == "messages"


class CountingStorage(MemoryStorage):
    """Memory counters that count the hits reaching them (each one a round trip when the counters are in Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    async def acquire_sliding_window_entry(self, *args, **kwargs) -> bool:
        self.hits += 1
        return await super().acquire_sliding_window_entry(*args, **kwargs)


async def test_a_streaming_kiosk_reaches_the_shared_counter_once_in_ten_frames(settings):
    storage = CountingStorage()
    limits = KioskRateLimits(storage=storage)
    limits.kiosk_key = "streaming-kiosk"
    frame = b"\x00\x00" * 480  # 20 ms
    for _ in range(90):  # 1.8 s of the microphone, read at once (within both limits)
        await limits.message()
        await limits.audio(len(frame))
    # 200 ms of real-time streaming per hit: ten frames, and their 9,600 bytes of audio.
    assert storage.hits == 90 // 10 + 90 // 10


async def test_after_a_stall_the_frames_of_that_time_pass_wherever_the_server_kept_them(settings):
    """uvicorn stops reading a socket while the application is busy: after a 1.5 s stall the kiosk's 75 frames of
    that time come from the socket's buffers, not from a queue the server can count. They pass; the stall grants
    no more than the limit allows in its time (90 frames), and then the limit holds."""
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 60  # above the 50 frames/s of real-time audio, below the burst
    limits = KioskRateLimits(storage=MemoryStorage())
    limits.kiosk_key = "stalled-kiosk"
    frame = b"\x00\x00" * 480  # 20 ms
    limits.stalled(1.5)
    for _ in range(75):
        await limits.message()
        await limits.audio(len(frame))
    for _ in range(15 + 60):  # the rest of the grant, then the limit's second
        await limits.message()
    with pytest.raises(RateLimited):
        await limits.message()


async def test_connections_that_come_and_go_do_not_use_up_a_budget_they_never_spent(settings):
    settings.KIOSK_RATE_MESSAGES_PER_SECOND = 1000
    storage = MemoryStorage()
    for _ in range(30):  # a kiosk reconnecting: each connection reads one frame and closes
        limits = KioskRateLimits(storage=storage)
        limits.kiosk_key = "reconnecting-kiosk"
        await limits.message()
    # Thirty bulks of 200 ms of frames are counted (300 of 1,000): the next connection is not refused.
    limits = KioskRateLimits(storage=storage)
    limits.kiosk_key = "reconnecting-kiosk"
    await limits.message()


async def test_budgets_taken_ahead_hold_the_limit_to_a_tenth_and_refuse_exactly_at_it():
    limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
    limit = RateLimitItemPerSecond(100)
    first, second = SharedBudget(limiter, limit, "frames", 50), SharedBudget(limiter, limit, "frames", 50)
    assert await first.spend("kiosk") and first.unspent == 9  # a tenth taken, one frame of it spent
    admitted = 0
    while await second.spend("kiosk"):
        admitted += 1
    assert admitted == 90  # the first connection's nine unspent frames are the only budget lost
    assert await first.spend("kiosk", cost=9) and not await first.spend("kiosk")


# --- operations API throttles --------------------------------------------------------------------------


@pytest.fixture
def operator_token(db):
    user = get_user_model().objects.create_user("operator", "op@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_rolloutconfig"))
    _, raw = ApiToken.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_control_posts_are_throttled_per_user_with_429(client, settings, operator_token):
    settings.API_THROTTLE_CONTROL = "3/minute"
    for _ in range(3):
        response = client.post(
            "/api/v1/realtime/force-fallback", {"reason": "drill"}, "application/json", **operator_token
        )
        assert response.status_code == 200
    response = client.post("/api/v1/realtime/resume", {"reason": "drill"}, "application/json", **operator_token)
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert client.get("/api/v1/realtime/status", **operator_token).status_code == 200  # reads have their own budget


def test_every_staff_call_and_anonymous_health_checks_are_throttled(client, settings, operator_token):
    settings.API_THROTTLE_USER = "2/minute"
    settings.API_THROTTLE_ANON = "2/minute"
    assert [client.get("/api/v1/realtime/status", **operator_token).status_code for _ in range(3)] == [200, 200, 429]
    codes = [client.get("/api/v1/realtime/health-check").status_code for _ in range(3)]
    assert codes[:2] != [429, 429] and codes[2] == 429


# --- admin login lockout -------------------------------------------------------------------------------


def login(client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "boss", "password": password})


@pytest.mark.django_db
def test_admin_login_locks_after_repeated_wrong_passwords_until_an_operator_resets(client, settings):
    get_user_model().objects.create_superuser("boss", "boss@example.com", "right-password")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "wrong").status_code == 200  # the form again, with an error
    assert login(client, "wrong").status_code == 429  # the last allowed failure locks
    locked = login(client, "right-password")
    assert locked.status_code == 429 and "_auth_user_id" not in client.session
    call_command("axes_reset")
    response = login(client, "right-password")
    assert response.status_code == 302 and response["Location"] == "/admin/"


@pytest.mark.django_db
def test_logins_without_a_request_still_work_for_scripts_and_tests(client):
    get_user_model().objects.create_superuser("boss", "boss@example.com", "right-password")
    assert client.login(username="boss", password="right-password")
    assert client.get("/admin/").status_code == 200
