"""RealtimeClient against the emulator: session setup, audio, function calls, usage, and every fault knob."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import time

import pytest

from realtime.client import RealtimeClient
from realtime.emulator import CallFunction, Say, ScriptedBrain
from realtime.emulator.audio import duration_ms, silence, speech_for_text, tone
from realtime.errors import (
    RealtimeClosedError,
    RealtimeConnectionError,
    RealtimeError,
    RealtimeHandshakeError,
    RealtimeUpstreamError,
)
from tests.support.realtime import TEST_KEY

pytestmark = pytest.mark.timeout(30)

TOOLS = [
    {
        "type": "function",
        "name": "collect_visitor_info",
        "description": "Record what the visitor said.",
        "parameters": {
            "type": "object",
            "properties": {
                name: {"type": "string"} for name in ("visitor_name", "company_name", "purpose", "host_name")
            },
        },
    }
]


def make_client(server, **kwargs) -> RealtimeClient:
    options = {"api_key": TEST_KEY, "base_url": server.base_url, "tools": TOOLS, "connect_timeout": 3.0} | kwargs
    return RealtimeClient(**options)


async def collect(client: RealtimeClient, until: str, *, within: float = 5.0) -> list[dict]:
    """Events up to and including the first of type `until`."""
    events = []
    async with asyncio.timeout(within):
        async for event in client.events():
            events.append(event)
            if event["type"] == until:
                return events
    return events


async def test_connect_configures_the_session_for_the_kiosk(realtime_emulator):
    client = make_client(realtime_emulator, instructions="受付です。", voice="cedar", language="ja")
    session = await client.connect()
    await client.close()
    async with asyncio.timeout(1):
        emulated = await realtime_emulator.wait_for_session()
    update = emulated.received[0]
    assert update["type"] == "session.update"
    sent = update["session"]
    assert sent["type"] == "realtime" and sent["instructions"] == "受付です。" and sent["tools"] == TOOLS
    assert sent["audio"]["input"]["format"] == sent["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert sent["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert sent["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe", "language": "ja"}
    assert sent["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["output"]["voice"] == "cedar" and session["tools"] == TOOLS


async def test_rejected_configuration_raises_with_the_error_param(realtime_emulator):
    client = make_client(realtime_emulator, voice="robot")
    with pytest.raises(RealtimeUpstreamError) as caught:
        await client.connect()
    assert (caught.value.code, caught.value.param, caught.value.fatal) == (
        "invalid_value",
        "session.audio.output.voice",
        False,
    )


async def test_audio_round_trip_with_server_vad(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("いらっしゃいませ")], transcripts=["こんにちは"])
    client = make_client(realtime_emulator)
    await client.connect()
    for _ in range(10):
        await client.append_audio(tone(40))
    await client.append_audio(silence(600))
    events = await collect(client, "response.done")
    await client.close()
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    transcript = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert audio == speech_for_text("いらっしゃいませ")
    assert transcript["transcript"] == "こんにちは"
    appended = [e for e in realtime_emulator.received if e["type"] == "input_audio_buffer.append"]
    assert sum(duration_ms(base64.b64decode(e["audio"])) for e in appended) == 1000


async def test_audio_waits_while_the_upstream_socket_takes_no_more_and_arrives_in_order(realtime_emulator):
    client = make_client(realtime_emulator, turn_detection=None)
    await client.connect()
    frames = [tone(100), silence(20), tone(100)]
    await client.append_audio(frames[0])  # sent at once
    client._ws.pause_writing()  # what the transport calls when its write buffer is full
    held = asyncio.ensure_future(client.append_audio(frames[1]))
    await asyncio.sleep(0.2)
    assert not held.done()  # it waits for the transport, as `websockets`' own send does
    client._ws.resume_writing()
    await asyncio.wait_for(held, 1)
    await client.append_audio(frames[2])
    await client.commit()
    await collect(client, "input_audio_buffer.committed")  # answered after the appends before it
    await client.close()
    appended = [e["audio"] for e in realtime_emulator.received if e["type"] == "input_audio_buffer.append"]
    assert [base64.b64decode(audio) for audio in appended] == frames


async def test_audio_after_the_upstream_closed_raises_the_closed_error(realtime_emulator):
    client = make_client(realtime_emulator)
    await client.connect()
    realtime_emulator.set_faults(close_code=1011)
    with pytest.raises(RealtimeClosedError):
        await collect(client, "response.done")
    with pytest.raises(RealtimeError):
        await client.append_audio(tone(20))


async def test_function_call_output_then_follow_up_response(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain(
        [CallFunction("collect_visitor_info", {"visitor_name": "山田", "company_name": "ABC商事"}), Say("山田様ですね")]
    )
    client = make_client(realtime_emulator, turn_detection=None)
    await client.connect()
    await client.append_audio(tone(300))
    await client.commit()
    await client.create_response()
    events = await collect(client, "response.function_call_arguments.done")
    call = events[-1]
    # Sent while the function-call response is still open: the response.create waits for its response.done.
    await client.send_function_output(call["call_id"], {"ok": True, "reply": "山田様ですね"})
    assert client.response_active
    events = await collect(client, "response.done")
    events += await collect(client, "response.done")
    await client.close()
    assert json.loads(call["arguments"]) == {"visitor_name": "山田", "company_name": "ABC商事"}
    output = next(e for e in realtime_emulator.received if e.get("item", {}).get("type") == "function_call_output")
    assert output["item"]["call_id"] == call["call_id"]
    assert json.loads(output["item"]["output"]) == {"ok": True, "reply": "山田様ですね"}
    sent_types = [e["type"] for e in realtime_emulator.received]
    assert sent_types.index("response.create", sent_types.index("conversation.item.create")) > 0
    assert not any(e["type"] == "error" for e in events)
    assert events[-1]["response"]["output"][0]["content"][0]["transcript"] == "山田様ですね"


async def test_every_response_done_carries_its_usage(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("はい"), Say("承知しました")])
    client = make_client(realtime_emulator)
    await client.connect()
    await client.create_response()
    first = await collect(client, "response.done")
    await client.create_response()
    second = await collect(client, "response.done")
    await client.close()
    assert first[-1]["response"]["usage"]["total_tokens"] > 0
    usage = second[-1]["response"]["usage"]
    assert usage["output_token_details"]["audio_tokens"] == len("承知しました") * 60 // 50
    assert usage["input_token_details"]["cached_tokens_details"]["text_tokens"] > 0


async def test_truncate_is_clamped_to_the_audio_actually_received(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("こんにちは")])
    client = make_client(realtime_emulator)
    await client.connect()
    await client.create_response()
    events = await collect(client, "response.done")
    item_id = events[-1]["response"]["output"][0]["id"]
    await client.truncate(item_id, 0, 10_000)
    events = await collect(client, "conversation.item.truncated")
    await client.close()
    assert events[-1]["audio_end_ms"] == len("こんにちは") * 60


async def test_cancel_response_ends_it_as_cancelled(realtime_emulator):
    realtime_emulator.config.pace = 0.5
    realtime_emulator.brain = ScriptedBrain([Say("ただいま担当者をお呼びしております。" * 3)])
    client = make_client(realtime_emulator)
    await client.connect()
    await client.create_response()
    await collect(client, "response.output_audio.delta")
    await client.cancel_response()
    events = await collect(client, "response.done")
    await client.close()
    assert events[-1]["response"]["status"] == "cancelled"
    assert not client.response_active


@pytest.mark.parametrize(("status", "retryable"), [(401, False), (403, False), (429, True), (500, True), (503, True)])
async def test_handshake_rejections_are_classified(realtime_emulator, status, retryable):
    realtime_emulator.set_faults(handshake_status=status, retry_after_seconds=3)
    client = make_client(realtime_emulator)
    with pytest.raises(RealtimeHandshakeError) as caught:
        await client.connect()
    error = caught.value
    assert (error.status, error.retryable, error.fatal) == (status, retryable, True)
    assert error.retry_after == (3.0 if status in (429, 503) else None)


async def test_wrong_api_key_is_a_final_401_and_never_logged(realtime_emulator, caplog):
    caplog.set_level(logging.DEBUG)
    client = RealtimeClient(api_key="sk-secret-9876", base_url=realtime_emulator.base_url, connect_timeout=3.0)
    with pytest.raises(RealtimeHandshakeError) as caught:
        await client.connect()
    assert caught.value.status == 401 and not caught.value.retryable
    assert "sk-secret-9876" not in caplog.text and "sk-secret-9876" not in repr(client)


async def test_connection_refused_fails_without_waiting_for_the_connect_timeout():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RealtimeClient(api_key=TEST_KEY, base_url=f"ws://127.0.0.1:{port}/v1", connect_timeout=60.0)
    with pytest.raises(RealtimeConnectionError) as caught:
        async with asyncio.timeout(10):  # far below the connect timeout
            await client.connect()
    assert caught.value.reason == "refused" and caught.value.retryable


async def test_refuse_connections_knob_drops_the_handshake(realtime_emulator):
    realtime_emulator.set_faults(refuse_connections=True)
    with pytest.raises(RealtimeConnectionError) as caught:
        await make_client(realtime_emulator).connect()
    assert caught.value.reason == "reset" and realtime_emulator.sessions == []


async def test_silent_handshake_times_out():
    async def accept_and_say_nothing(reader, writer):
        await reader.read()
        writer.close()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RealtimeClient(api_key=TEST_KEY, base_url=f"ws://127.0.0.1:{port}/v1", connect_timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(RealtimeConnectionError) as caught:
            async with asyncio.timeout(10):
                await client.connect()
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.reason == "timeout" and time.monotonic() - started >= 0.3  # not before the timeout


@pytest.mark.parametrize("code", [1001, 1006, 1011])
async def test_mid_stream_close_raises_closed_error_with_the_code(realtime_emulator, code):
    realtime_emulator.brain = ScriptedBrain([Say("本日はお越しいただきありがとうございます")])
    client = make_client(realtime_emulator)
    await client.connect()
    await client.create_response()
    await collect(client, "response.output_audio.delta")
    realtime_emulator.set_faults(close_code=code)
    with pytest.raises(RealtimeClosedError) as caught:
        await collect(client, "response.done")
    assert (caught.value.close_code, caught.value.retryable) == (code, True)


async def test_non_recoverable_close_is_not_retryable(realtime_emulator):
    client = make_client(realtime_emulator)
    await client.connect()
    realtime_emulator.set_faults(close_code=1008)
    with pytest.raises(RealtimeClosedError) as caught:
        await collect(client, "response.done")
    assert (caught.value.close_code, caught.value.retryable) == (1008, False)


@pytest.mark.parametrize("code", ["rate_limit_exceeded", "server_error", "response_cancel_not_active"])
async def test_non_fatal_error_events_go_to_on_error_and_the_session_continues(realtime_emulator, code):
    realtime_emulator.brain = ScriptedBrain([Say("はい")])
    errors = []
    client = make_client(realtime_emulator, on_error=errors.append)
    await client.connect()
    realtime_emulator.set_faults(error_code=code)
    events = await collect(client, "error")
    await client.create_response()
    events += await collect(client, "response.done")
    await client.close()
    assert [(e.code, e.fatal) for e in errors] == [(code, False)]
    assert events[-1]["response"]["status"] == "completed"


async def test_session_expired_is_fatal_but_retryable(realtime_emulator):
    client = make_client(realtime_emulator)
    await client.connect()
    realtime_emulator.set_faults(error_code="session_expired")
    with pytest.raises(RealtimeUpstreamError) as caught:
        await collect(client, "response.done")
    assert (caught.value.code, caught.value.fatal, caught.value.retryable) == ("session_expired", True, True)


async def test_failed_response_is_reported_as_an_upstream_error(realtime_emulator):
    errors = []
    client = make_client(realtime_emulator, on_error=errors.append)
    await client.connect()
    realtime_emulator.set_faults(fail_responses="insufficient_quota")
    await client.create_response()
    events = await collect(client, "response.done")
    await client.close()
    assert events[-1]["response"]["status"] == "failed"
    assert [(e.code, e.fatal) for e in errors] == [("insufficient_quota", False)]


async def test_stall_raises_stalled_after_the_idle_timeout(realtime_emulator):
    client = make_client(realtime_emulator)
    await client.connect()
    realtime_emulator.set_faults(stall=True)
    await client.create_response()
    started = time.monotonic()
    with pytest.raises(RealtimeConnectionError) as caught:
        async with asyncio.timeout(10):
            async for _ in client.events(idle_timeout=0.3):
                pass
    realtime_emulator.set_faults(stall=False)
    assert caught.value.reason == "stalled" and time.monotonic() - started >= 0.3  # not before the idle timeout


async def test_latency_knob_delays_each_event_without_adding_up(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("お待たせいたしました。" * 3)])  # 1.8 s of audio, 18 deltas
    client = make_client(realtime_emulator)
    await client.connect()
    realtime_emulator.set_faults(latency_ms=200)
    started = time.monotonic()
    await client.create_response()
    created = await collect(client, "response.created")
    first_event = time.monotonic() - started
    events = await collect(client, "response.done")
    total = time.monotonic() - started
    await client.close()
    assert created[-1]["type"] == "response.created" and len(events) > 40
    assert first_event >= 0.2  # the first event waits for the injected latency...
    assert total < 0.2 * len(events) / 2  # ...and the next ones not again each (that would take 0.2 s per event)


@pytest.mark.parametrize("kind", ["non_json", "missing_type", "binary"])
async def test_malformed_frames_are_counted_and_dropped(realtime_emulator, kind):
    realtime_emulator.brain = ScriptedBrain([Say("はい")])
    client = make_client(realtime_emulator)
    await client.connect()
    realtime_emulator.set_faults(malformed=kind)
    await client.create_response()
    events = await collect(client, "response.done")
    await client.close()
    assert client.malformed_frames == 1 and events[-1]["response"]["status"] == "completed"


async def test_unknown_event_types_are_logged_once_and_not_passed_on(realtime_emulator, caplog):
    realtime_emulator.brain = ScriptedBrain([Say("はい"), Say("はい")])
    client = make_client(realtime_emulator)
    await client.connect()
    seen = []
    for _ in range(2):
        realtime_emulator.set_faults(malformed="unknown_type")
        await client.create_response()
        seen += await collect(client, "response.done")
    await client.close()
    warnings = [r for r in caplog.records if "response.hologram.delta" in r.getMessage()]
    assert len(warnings) == 1
    assert not any(e["type"] == "response.hologram.delta" for e in seen)


async def test_the_event_stream_stops_at_close(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("はい")])
    client = make_client(realtime_emulator)
    seen = []
    done = asyncio.Event()

    async def read() -> None:
        async for event in client.events():
            seen.append(event["type"])
            if event["type"] == "response.done":
                done.set()

    await client.connect()
    reader = asyncio.create_task(read())
    await client.create_response()
    async with asyncio.timeout(5):
        await done.wait()
    await client.close()
    async with asyncio.timeout(5):
        await reader
    assert seen[0] == "response.created" and "response.done" in seen


async def test_session_starts_do_not_each_load_the_ca_bundle_on_the_event_loop(realtime_emulator, monkeypatch):
    """Loading the CA bundle costs ~80 ms of CPU; at every session start it held up every live session's audio."""
    import ssl

    loads = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", lambda *a, **k: loads.append(1) or real(*a, **k))
    clients = [RealtimeClient(api_key=TEST_KEY, base_url=realtime_emulator.base_url) for _ in range(3)]
    await clients[0].connect()
    await asyncio.gather(*(client.close() for client in clients))
    assert len(loads) <= 1
