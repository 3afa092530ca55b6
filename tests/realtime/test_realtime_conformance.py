"""Conformance with the official openai SDK: its realtime client runs a session against the emulator, every event
the emulator sends validates as the SDK's RealtimeServerEvent, and every event RealtimeClient sends validates as
RealtimeClientEvent. Validation is strict: wrong types fail, and so does any field the SDK schema lacks, except
the few the real service is known to send beyond the schema (WIRE_EXTRAS)."""

from __future__ import annotations

import asyncio
import base64
import json
import typing
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter

from realtime.client import SERVER_EVENT_TYPES, RealtimeClient
from realtime.emulator import CallFunction, Say, ScriptedBrain
from realtime.emulator.audio import silence, tone
from tests.support.realtime import TEST_KEY

pytestmark = pytest.mark.timeout(30)

# Sent by the service (OpenAPI examples, real traces) but absent from the SDK's generated models.
WIRE_EXTRAS = {"session.id", "session.object", "session.expires_at"}
TOOL = {
    "type": "function",
    "name": "collect_visitor_info",
    "description": "Record what the visitor said.",
    "parameters": {"type": "object", "properties": {"visitor_name": {"type": "string"}}},
}


def _models_by_type(union: Any) -> dict[str, type[BaseModel]]:
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(model.model_fields["type"].annotation)[0]: model for model in members}


SERVER_MODELS = _models_by_type(RealtimeServerEvent)
CLIENT_MODELS = _models_by_type(RealtimeClientEvent)


def _extras(value: Any, path: str) -> list[str]:
    """Dotted paths of fields present on the wire but unknown to the SDK models (pydantic `extra="allow"`)."""
    if isinstance(value, BaseModel):
        found = [f"{path}.{key}".lstrip(".") for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [extra for item in value for extra in _extras(item, path)]
    return []


def strictly_valid(event: dict[str, Any], models: dict[str, type[BaseModel]]) -> BaseModel:
    model = models.get(event.get("type"))
    assert model is not None, f"not an event type of the SDK: {event.get('type')!r}"
    parsed = TypeAdapter(model).validate_python(event, strict=True)
    unknown = sorted(set(_extras(parsed, "")) - WIRE_EXTRAS)
    assert not unknown, f"{event['type']}: fields unknown to the SDK: {unknown}"
    return parsed


def test_the_strict_check_rejects_a_wrong_field_type_and_an_unknown_field():
    good = {
        "type": "conversation.item.truncated",
        "event_id": "event_1",
        "item_id": "i",
        "content_index": 0,
        "audio_end_ms": 10,
    }
    strictly_valid(good, SERVER_MODELS)
    with pytest.raises(ValueError):
        strictly_valid(good | {"audio_end_ms": "10"}, SERVER_MODELS)
    with pytest.raises(AssertionError):
        strictly_valid(good | {"audio_end": 10}, SERVER_MODELS)


def test_client_knows_every_server_event_type_of_the_sdk():
    assert set(SERVER_MODELS) == SERVER_EVENT_TYPES


# The server event types one whole session (below) must show, so that every one of them is checked.
WHOLE_SESSION_EVENT_TYPES = frozenset(
    {
        "session.created",
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.done",
        "rate_limits.updated",
        "conversation.item.truncated",
        "input_audio_buffer.cleared",
        "error",
    }
)


class SdkEvents:
    """The events an SDK connection yields, all recorded; `next_of` reads on to the next one of a type."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.received: list[Any] = []

    async def next_of(self, event_type: str) -> Any:
        async with asyncio.timeout(5):
            async for event in self.connection:
                self.received.append(event)
                if event.type == event_type:
                    return event
        raise AssertionError(f"connection ended before {event_type}")


async def whole_session(events: SdkEvents) -> dict[str, Any]:
    """A session as a kiosk holds it (speech, a function call, a reply cut short) plus two mistakes; the
    events of note by name."""
    connection, next_of = events.connection, events.next_of
    await next_of("session.created")
    await connection.session.update(
        session={
            "type": "realtime",
            "instructions": "受付",
            "tools": [TOOL],
            "audio": {"input": {"transcription": {"model": "whisper-1", "language": "ja"}}},
        }
    )
    await next_of("session.updated")
    await connection.input_audio_buffer.append(audio=base64.b64encode(tone(400) + silence(400)).decode())
    call = await next_of("response.function_call_arguments.done")
    await next_of("response.done")
    await connection.conversation.item.create(
        item={"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"reply": "ok"})}
    )
    await connection.response.create()
    delta = await next_of("response.output_audio.delta")
    await connection.response.cancel()
    cancelled = await next_of("response.done")
    await connection.conversation.item.truncate(item_id=delta.item_id, content_index=0, audio_end_ms=50)
    await next_of("conversation.item.truncated")
    await connection.session.update(session={"type": "realtime", "modalities": ["audio"]})  # type: ignore[typeddict-unknown-key]
    error = await next_of("error")
    await connection.input_audio_buffer.clear()
    await next_of("input_audio_buffer.cleared")
    await connection.input_audio_buffer.commit()
    empty = await next_of("error")
    return {"call": call, "cancelled": cancelled, "error": error, "empty": empty}


async def test_sdk_session_against_the_emulator_sees_only_valid_server_events(realtime_emulator):
    realtime_emulator.config.pace = 0.2
    realtime_emulator.brain = ScriptedBrain(
        [CallFunction("collect_visitor_info", {"visitor_name": "山田"}), Say("山田様、ようこそ。" * 4), Say("はい")],
        transcripts=["山田です"],
    )
    client = AsyncOpenAI(api_key=TEST_KEY, websocket_base_url=realtime_emulator.base_url)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        events = SdkEvents(connection)
        noted = await whole_session(events)
    await client.close()

    assert noted["call"].name == "collect_visitor_info"
    assert noted["cancelled"].response.status == "cancelled"
    assert (noted["error"].error.code, noted["error"].error.param) == ("unknown_parameter", "session.modalities")
    assert noted["empty"].error.code == "input_audio_buffer_commit_empty"
    sent = realtime_emulator.sent
    assert [e["type"] for e in sent] == [e.type for e in events.received]
    for event in sent:
        strictly_valid(event, SERVER_MODELS)
    assert {e["type"] for e in sent} >= WHOLE_SESSION_EVENT_TYPES


async def test_every_event_realtime_client_sends_is_a_valid_client_event(realtime_emulator):
    realtime_emulator.brain = ScriptedBrain(
        [CallFunction("collect_visitor_info", {"visitor_name": "山田"}), Say("はい")]
    )
    client = RealtimeClient(api_key=TEST_KEY, base_url=realtime_emulator.base_url, tools=[TOOL], turn_detection=None)
    await client.connect()
    await client.append_audio(tone(200))
    await client.commit()
    await client.create_response()
    call = None
    async with asyncio.timeout(5):
        async for event in client.events():
            if event["type"] == "response.function_call_arguments.done":
                call = event
                await client.send_function_output(event["call_id"], {"reply": "はい"})
            if event["type"] == "response.done" and event["response"]["output"][0]["type"] == "message":
                await client.truncate(event["response"]["output"][0]["id"], 0, 100)
                await client.cancel_response()
            if event["type"] == "error":
                break
    await client.close()
    assert call is not None
    sent = realtime_emulator.received
    assert [e["type"] for e in sent] == [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "response.create",
        "conversation.item.create",
        "response.create",
        "conversation.item.truncate",
        "response.cancel",
    ]
    for event in sent:
        strictly_valid(event, CLIENT_MODELS)
