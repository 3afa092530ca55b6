"""Protocol fidelity of the Realtime GA emulator, driven by a bare websockets client."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import string
import time

import httpx
import pytest
import websockets
from django.core.management import CommandError, call_command

from realtime.emulator import CallFunction, ReceptionBrain, Say, ScriptedBrain
from realtime.emulator.audio import duration_ms, silence, speech_for_text, tone
from realtime.emulator.brain import BrainContext
from realtime.emulator.protocol import new_id
from realtime.voices import REALTIME_VOICES
from tests.support.realtime import TEST_KEY, open_raw

pytestmark = pytest.mark.timeout(30)

MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


def types(events):
    return [event["type"] for event in events]


async def test_session_created_carries_ga_defaults_and_expiry(realtime_emulator):
    connection = await websockets.connect(
        f"{realtime_emulator.url}?model=gpt-realtime", additional_headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    async with connection:
        created = json.loads(await asyncio.wait_for(connection.recv(), 5))
    session = created["session"]
    assert created["type"] == "session.created" and created["event_id"].startswith("event_")
    assert session["type"] == "realtime" and session["id"].startswith("sess_") and session["model"] == "gpt-realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 200
    assert session["audio"]["output"]["voice"] == "marin"
    assert abs(session["expires_at"] - (time.time() + 3600)) < 5


def test_ids_are_the_services_shape_and_never_repeat():
    ids = [new_id("event") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"event_[A-Za-z0-9]{21}", value) for value in ids)
    assert set("".join(value[6:] for value in ids)) == set(string.ascii_letters + string.digits)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-wrong"}])
async def test_missing_or_wrong_key_is_rejected_with_401_at_the_handshake(realtime_emulator, headers):
    with pytest.raises(websockets.InvalidStatus) as caught:
        await websockets.connect(f"{realtime_emulator.url}?model=gpt-realtime", additional_headers=headers)
    assert caught.value.response.status_code == 401
    assert b"invalid_api_key" in caught.value.response.body or b"didn't provide" in caught.value.response.body


async def test_browser_subprotocol_auth_is_accepted_and_realtime_echoed(realtime_emulator):
    connection = await websockets.connect(
        f"{realtime_emulator.url}?model=gpt-realtime",
        subprotocols=["realtime", f"openai-insecure-api-key.{TEST_KEY}"],
    )
    async with connection:
        assert connection.subprotocol == "realtime"
        assert json.loads(await asyncio.wait_for(connection.recv(), 5))["type"] == "session.created"


async def test_beta_header_gets_beta_api_shape_disabled_then_close_4000(realtime_emulator):
    connection = await websockets.connect(
        f"{realtime_emulator.url}?model=gpt-4o-realtime-preview",
        additional_headers={"Authorization": f"Bearer {TEST_KEY}", "OpenAI-Beta": "realtime=v1"},
    )
    async with connection:
        error = json.loads(await asyncio.wait_for(connection.recv(), 5))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(connection.recv(), 5)
    assert error["error"]["code"] == "beta_api_shape_disabled"
    assert connection.close_code == 4000


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"instructions": "hi"}, "missing_required_parameter", "session.type"),
        ({"type": "realtime", "modalities": ["audio"]}, "unknown_parameter", "session.modalities"),
        (
            {"type": "realtime", "audio": {"input": {"turn_detection": None, "vad": 1}}},
            "unknown_parameter",
            "session.audio.input.vad",
        ),
        (
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        ({"type": "realtime", "audio": {"output": {"voice": "robot"}}}, "invalid_value", "session.audio.output.voice"),
        ({"type": "beta"}, "invalid_value", "session.type"),
    ],
)
async def test_bad_session_update_is_an_error_event_and_changes_nothing(realtime_emulator, session, code, param):
    raw = await open_raw(realtime_emulator)
    await raw.send({"type": "session.update", "event_id": "evt_client_1", "session": session})
    error = await raw.recv()
    await raw.send({"type": "session.update", "session": {"type": "realtime"}})
    updated = await raw.recv()
    await raw.close()
    assert error["type"] == "error"
    assert error["error"] | {"message": None} == {
        "type": "invalid_request_error",
        "code": code,
        "param": param,
        "event_id": "evt_client_1",
        "message": None,
    }
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"


async def test_session_update_merges_and_returns_the_full_config(realtime_emulator):
    raw = await open_raw(realtime_emulator)
    tool = {"type": "function", "name": "collect_visitor_info", "description": "d", "parameters": {"type": "object"}}
    await raw.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "受付",
                "tools": [tool],
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.6}}},
            },
        }
    )
    session = (await raw.recv())["session"]
    await raw.close()
    assert session["instructions"] == "受付" and session["tools"] == [tool]
    assert session["audio"]["input"]["turn_detection"]["threshold"] == 0.6
    assert session["audio"]["input"]["turn_detection"]["prefix_padding_ms"] == 300
    assert session["audio"]["output"]["voice"] == "marin"


def voice_update(voice: str) -> dict:
    return {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": voice}}}}


async def test_the_voice_given_speaks_the_replies_only_the_apis_voices_are_taken_and_it_stays(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("はい")])
    raw = await open_raw(realtime_emulator)
    await raw.send(voice_update("robot"))
    refused = await raw.recv()
    await raw.send(voice_update("cedar"))
    updated = await raw.recv()
    await raw.send({"type": "response.create"})
    reply = await raw.until("response.done")
    await raw.send(voice_update("ash"))  # the session has spoken: its voice is kept
    locked = await raw.until("error")
    await raw.close()
    supported = ", ".join(repr(voice) for voice in REALTIME_VOICES)
    assert refused["error"]["message"] == f"Invalid value: 'robot'. Supported values are: {supported}."
    assert updated["session"]["audio"]["output"]["voice"] == "cedar"
    created = next(event for event in reply if event["type"] == "response.created")
    assert created["response"]["audio"]["output"]["voice"] == "cedar"
    assert (locked[-1]["error"]["code"], locked[-1]["error"]["param"]) == (
        "cannot_update_voice",
        "session.audio.output.voice",
    )


async def test_server_vad_reports_speech_and_commits_then_responds(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("はい")])
    raw = await open_raw(realtime_emulator)
    await raw.append(silence(500) + tone(400) + silence(300))
    events = await raw.until("response.done")
    await raw.close()
    started, stopped, committed = events[0], events[1], events[2]
    assert types(events[:5]) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert started["audio_start_ms"] == 500 - 300  # the prefix padding is included
    assert stopped["audio_end_ms"] == 900 + 200  # speech end plus the silence duration
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == events[3]["item"]["id"]
    assert committed["previous_item_id"] is None
    assert events[3]["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    assert "response.created" in types(events)


async def test_silence_alone_triggers_no_vad_events(realtime_emulator):
    raw = await open_raw(realtime_emulator)
    await raw.append(silence(2000))
    await raw.send({"type": "input_audio_buffer.clear"})
    assert types([await raw.recv()]) == ["input_audio_buffer.cleared"]
    await raw.close()


async def test_manual_commit_creates_an_item_but_no_response(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain(transcripts=["こんにちは"])
    raw = await open_raw(realtime_emulator)
    await raw.send(
        {
            "type": "session.update",
            "session": MANUAL | {"audio": {"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}}},
        }
    )
    await raw.recv()
    await raw.append(tone(300))
    await raw.send({"type": "input_audio_buffer.commit"})
    events = await raw.until("conversation.item.input_audio_transcription.completed")
    await raw.send({"type": "conversation.item.retrieve", "item_id": events[0]["item_id"]})
    retrieved = await raw.recv()
    await raw.close()
    assert types(events) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert events[3]["transcript"] == "こんにちは" and events[3]["usage"]["type"] == "tokens"
    assert retrieved["item"]["content"][0]["transcript"] == "こんにちは"
    assert duration_ms(base64.b64decode(retrieved["item"]["content"][0]["audio"])) == 300


async def test_commit_of_a_too_short_buffer_is_input_audio_buffer_commit_empty(realtime_emulator):
    raw = await open_raw(realtime_emulator)
    await raw.append(silence(50))
    await raw.send({"type": "input_audio_buffer.commit", "event_id": "evt_commit"})
    error = await raw.recv()
    await raw.close()
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert error["error"]["event_id"] == "evt_commit"
    assert "Expected at least 100ms of audio, but buffer only has 50.00ms" in error["error"]["message"]


async def test_truncate_trims_audio_and_drops_the_transcript(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("いらっしゃいませ")])
    raw = await open_raw(realtime_emulator)
    await raw.send({"type": "response.create"})
    events = await raw.until("response.done")
    item_id = events[-1]["response"]["output"][0]["id"]
    generated = sum(
        duration_ms(base64.b64decode(e["delta"])) for e in events if e["type"] == "response.output_audio.delta"
    )
    await raw.send(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": generated + 1}
    )
    too_long = await raw.until("error")
    await raw.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 120})
    truncated = await raw.until("conversation.item.truncated")
    await raw.send({"type": "conversation.item.retrieve", "item_id": item_id})
    retrieved = await raw.until("conversation.item.retrieved")
    await raw.close()
    assert generated == len("いらっしゃいませ") * 60
    assert too_long[-1]["error"]["param"] == "audio_end_ms"
    assert truncated[-1] | {"event_id": None} == {
        "type": "conversation.item.truncated",
        "event_id": None,
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 120,
    }
    part = retrieved[-1]["item"]["content"][0]
    assert part["transcript"] == "" and duration_ms(base64.b64decode(part["audio"])) == 120


async def test_cancel_ends_the_response_as_cancelled_with_all_done_events(realtime_emulator):
    realtime_emulator.config.pace = 0.5
    realtime_emulator.brain = ScriptedBrain([Say("本日はご来社いただきありがとうございます。" * 3)])
    raw = await open_raw(realtime_emulator)
    await raw.send({"type": "response.create"})
    await raw.until("response.output_audio.delta")
    await raw.send({"type": "response.cancel"})
    events = await raw.until("response.done")
    await raw.send({"type": "response.cancel", "event_id": "evt_cancel_2"})
    harmless = await raw.until("error")
    await raw.close()
    done = events[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"] == {
        "type": "cancelled",
        "reason": "client_cancelled",
    }
    assert done["output"][0]["status"] == "incomplete"
    assert [t for t in types(events) if t.endswith(".done")] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert types(events).count("response.output_audio.delta") < 20
    assert harmless[-1]["error"]["code"] == "response_cancel_not_active"


async def test_speech_during_a_response_cancels_it_as_turn_detected(realtime_emulator):
    realtime_emulator.config.pace = 0.5
    realtime_emulator.brain = ScriptedBrain([Say("少々お待ちください。" * 5), Say("はい")])
    raw = await open_raw(realtime_emulator)
    await raw.send({"type": "response.create"})
    await raw.until("response.output_audio.delta")
    await raw.append(tone(300))
    events = await raw.until("response.done")
    await raw.close()
    assert "input_audio_buffer.speech_started" in types(events)
    assert events[-1]["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}


async def test_second_response_create_while_one_is_active_is_rejected(realtime_emulator):
    realtime_emulator.config.pace = 0.5
    realtime_emulator.brain = ScriptedBrain([Say("ようこそお越しくださいました")])
    raw = await open_raw(realtime_emulator)
    await raw.send({"type": "response.create"})
    first = await raw.until("response.created")
    await raw.send({"type": "response.create"})
    events = await raw.until("error")
    await raw.until("response.done")
    await raw.close()
    assert events[-1]["error"]["code"] == "conversation_already_has_active_response"
    assert first[-1]["response"]["id"] in events[-1]["error"]["message"]


async def test_function_call_waits_for_output_and_response_create(realtime_emulator):
    realtime_emulator.brain = brain = ScriptedBrain(
        [CallFunction("collect_visitor_info", {"visitor_name": "山田"}), Say("山田様ですね")]
    )
    raw = await open_raw(realtime_emulator)
    await raw.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "山田です"}]},
        }
    )
    await raw.send({"type": "response.create"})
    events = await raw.until("response.done")
    call = events[-1]["response"]["output"][0]
    await raw.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_unknown", "output": "{}"},
        }
    )
    unknown = await raw.until("error")
    await raw.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call["call_id"], "output": '{"ok": true}'},
        }
    )
    added = await raw.until("conversation.item.done")
    with pytest.raises(TimeoutError):
        await raw.recv(within=0.2)  # nothing happens until response.create
    await raw.send({"type": "response.create"})
    spoken = await raw.until("response.done")
    await raw.close()
    arguments = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert call["type"] == "function_call" and call["call_id"].startswith("call_") and call["status"] == "completed"
    assert arguments["name"] == "collect_visitor_info" and json.loads(arguments["arguments"]) == {
        "visitor_name": "山田"
    }
    assert (
        "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
        == (arguments["arguments"])
    )
    assert unknown[-1]["error"]["param"] == "item.call_id"
    assert added[-1]["item"]["type"] == "function_call_output"
    assert spoken[-1]["response"]["output"][0]["content"][0]["transcript"] == "山田様ですね"
    assert brain.contexts[0].user_texts == ["山田です"]
    assert [o["call_id"] for o in brain.contexts[1].function_outputs] == [call["call_id"]]


async def test_items_can_be_inserted_at_root_and_deleted(realtime_emulator):
    raw = await open_raw(realtime_emulator)
    message = {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "s"}]}
    await raw.send({"type": "conversation.item.create", "item": message | {"id": "item_a"}})
    await raw.send({"type": "conversation.item.create", "previous_item_id": "root", "item": message | {"id": "item_b"}})
    added = [
        e
        for e in await raw.until("conversation.item.done") + await raw.until("conversation.item.done")
        if e["type"] == "conversation.item.added"
    ]
    await raw.send({"type": "conversation.item.delete", "item_id": "item_a"})
    await raw.send({"type": "conversation.item.delete", "item_id": "item_a"})
    deleted, missing = await raw.recv(), await raw.recv()
    await raw.close()
    assert [(e["item"]["id"], e["previous_item_id"]) for e in added] == [("item_a", None), ("item_b", None)]
    assert [item["id"] for item in realtime_emulator.sessions[0].items] == ["item_b"]
    assert deleted == deleted | {"type": "conversation.item.deleted", "item_id": "item_a"}
    assert missing["type"] == "error" and missing["error"]["param"] == "item_id"


async def test_unknown_and_missing_type_and_bad_json_are_error_events(realtime_emulator):
    raw = await open_raw(realtime_emulator)
    await raw.send({"type": "response.teleport", "event_id": "evt_x"})
    await raw.send({"event_id": "evt_y"})
    await raw.connection.send("{not json")
    errors = [await raw.recv() for _ in range(3)]
    await raw.close()
    assert [(e["error"]["code"], e["error"]["param"]) for e in errors] == [
        ("invalid_value", "type"),
        ("invalid_event", None),
        ("invalid_json", None),
    ]
    assert errors[1]["error"]["message"] == "The 'type' field is missing."


async def test_session_expires_with_session_expired_then_close_1001(realtime_emulator):
    realtime_emulator.config.max_session_seconds = 0.3
    raw = await open_raw(realtime_emulator)
    error = await raw.recv()
    with pytest.raises(websockets.ConnectionClosed):
        await raw.recv()
    assert error["error"]["code"] == "session_expired" and error["error"]["type"] == "invalid_request_error"
    assert raw.connection.close_code == 1001
    assert (
        raw.connection.close_reason
        == error["error"]["message"]
        == "Your session hit the maximum duration of 0.3 seconds."
    )


async def test_usage_follows_the_token_rules_and_counts_cache(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain([Say("はい"), Say("はい")])
    raw = await open_raw(realtime_emulator)
    await raw.append(tone(1000) + silence(300))
    first = await raw.until("rate_limits.updated")
    await raw.send({"type": "response.create"})
    second = await raw.until("response.done")
    await raw.close()
    usage = next(e for e in first if e["type"] == "response.done")["response"]["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 12  # 1,200 ms of committed user audio at 10 tokens/s
    assert usage["output_token_details"]["audio_tokens"] == 200 // 50  # 200 ms of reply at 20 tokens/s
    assert usage["input_token_details"]["cached_tokens"] == 0
    assert second[-1]["response"]["usage"]["input_token_details"]["cached_tokens"] == usage["input_tokens"]
    assert first[-1]["type"] == "rate_limits.updated"


async def test_fire_drill_endpoint_changes_faults_of_a_running_server(realtime_emulator):
    url = f"http://127.0.0.1:{realtime_emulator.port}/v1/realtime/_faults"
    async with httpx.AsyncClient(timeout=5) as http:
        denied = await http.get(url, params={"stall": "1"})
        changed = await http.get(
            url, params={"handshake_status": "429", "latency_ms": "20"}, headers={"Authorization": f"Bearer {TEST_KEY}"}
        )
    assert denied.status_code == 401 and realtime_emulator.faults.stall is False
    assert changed.json()["handshake_status"] == 429 and realtime_emulator.faults.latency_ms == 20.0


async def test_reception_brain_calls_the_understood_tool_then_speaks_its_reply():
    heard = []

    def transcribe(pcm16, language):
        heard.append((duration_ms(pcm16), language))
        return "ABC商事の山田です"

    def understand(text):
        return ("collect_visitor_info", {"company_name": "ABC商事", "visitor_name": "山田"}) if "山田" in text else None

    brain = ReceptionBrain(transcribe, understand, lambda text, language: speech_for_text(text), language="ja")
    text = await brain.transcribe(tone(500), None)
    first = await brain.respond(BrainContext(items=[], tools=[], instructions="", language="ja", user_texts=[text]))
    after = await brain.respond(
        BrainContext(
            items=[],
            tools=[],
            instructions="",
            language="ja",
            function_outputs=[
                {"type": "function_call_output", "call_id": "c", "output": '{"reply": "山田様、ようこそ"}'}
            ],
        )
    )
    confused = await brain.respond(BrainContext(items=[], tools=[], instructions="", language="en", user_texts=["hmm"]))
    assert heard == [(500, "ja")]
    assert first == CallFunction("collect_visitor_info", {"company_name": "ABC商事", "visitor_name": "山田"})
    assert after == Say("山田様、ようこそ")
    assert confused == Say("Sorry, could you say that again?")
    assert duration_ms(await brain.synthesize("はい", None)) == 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fault_close_code": "999"}, "close_code must be one of"),
        ({"brain": "reception"}, "REALTIME_EMULATOR_BRAIN"),
    ],
)
def test_emulator_command_refuses_bad_options_before_serving(settings, options, message):
    settings.REALTIME_EMULATOR_BRAIN = None
    with pytest.raises(CommandError, match=message):
        call_command("realtime_emulator", port=0, **options)
