"""LangGraphBridge: function calls of the Realtime model run the reception workflow on its persisted state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from core.blocking import run_blocking
from realtime.bridge import LangGraphBridge, build_instructions, say_exactly, text_to_say
from realtime.client import RealtimeClient
from realtime.emulator import CallFunction, EmulatorServer, Say, ScriptedBrain
from reception import workflow
from tests.support.realtime import TEST_KEY, TIMEOUT, FakeKiosk
from tests.support.waiting import until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("isolated_workflow_state", "demo_directory"),
    pytest.mark.timeout(60),
]


USER_TURN = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "."}]}


def outputs(server: EmulatorServer) -> list[dict[str, Any]]:
    """Every function_call_output the emulator received, parsed."""
    return [
        json.loads(event["item"]["output"])
        for event in server.received
        if event["type"] == "conversation.item.create" and event["item"]["type"] == "function_call_output"
    ]


async def run_calls(
    server: EmulatorServer, session_id: str, calls: list[CallFunction], *, raw_arguments: str | None = None
) -> FakeKiosk:
    """Let the emulator make `calls` (each answered by the bridge, then spoken), one `response.create` each."""
    server.brain = ScriptedBrain([step for call in calls for step in (call, Say("ok"))])
    kiosk = FakeKiosk()
    bridge = LangGraphBridge(session_id, kiosk)
    client = RealtimeClient(api_key=TEST_KEY, base_url=server.base_url, tools=workflow.TOOLS, turn_detection=None)
    spoken = asyncio.Event()
    answered = 0

    async def read_events() -> None:
        nonlocal answered
        async for event in client.events():
            if event["type"] == "response.function_call_arguments.done":
                arguments = raw_arguments if raw_arguments is not None else event["arguments"]
                await bridge.handle_call(client, event["call_id"], event["name"], arguments)
            elif event["type"] == "response.done":
                output = event["response"]["output"]
                answered += bool(output) and output[0]["type"] == "message"
                if answered == len(calls):
                    spoken.set()

    await client.connect()
    pump = asyncio.create_task(read_events())
    try:
        for _ in calls:
            await client.create_item(USER_TURN)
            await client.create_response()
            await until(lambda: not client.response_active, within=TIMEOUT, what="the response done")
        async with asyncio.timeout(TIMEOUT):
            await spoken.wait()
    finally:
        await client.close()
        await pump
    return kiosk


async def start(session_id: str, language: str = "ja") -> workflow.TurnResult:
    return await run_blocking(workflow.start)(session_id, language, None)


async def test_function_call_runs_the_workflow_step_and_answers_upstream(realtime_emulator):
    await start("bridge-1")
    arguments = {"company_name": "株式会社テスト", "visitor_name": "山田太郎"}
    kiosk = await run_calls(realtime_emulator, "bridge-1", [CallFunction("collect_visitor_info", arguments)])

    [output] = outputs(realtime_emulator)
    assert output["ok"] is True
    assert set(output["missing"]) == {"purpose", "host_name"}
    assert "ご用件" in output["reply"]
    # function_call_output, then response.create: the follow-up response is asked for.
    types = [event["type"] for event in realtime_emulator.received]
    output_at = next(
        i
        for i, event in enumerate(realtime_emulator.received)
        if event.get("item", {}).get("type") == "function_call_output"
    )
    assert types[output_at + 1] == "response.create"
    [visit] = kiosk.of_type("visit.updated")
    assert visit == {
        "type": "visit.updated",
        "visitor_name": "山田太郎",
        "company_name": "株式会社テスト",
        "purpose": "",
        "host_name": "",
        "visitor_type": "unknown",
        "status": "collecting",
    }
    snapshot = await run_blocking(workflow.snapshot)("bridge-1")
    assert snapshot.visit["visitor_name"] == "山田太郎"


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("no_such_tool", {}, "unknown_tool"),
        ("collect_visitor_info", {"visitor_name": 5}, "invalid_arguments"),
        ("confirm_visitor_info", {}, "invalid_arguments"),
        ("collect_visitor_info", {"shoe_size": "42"}, "invalid_arguments"),
    ],
)
async def test_invalid_calls_get_a_structured_error_output(realtime_emulator, name, arguments, error):
    await start("bridge-bad")
    kiosk = await run_calls(realtime_emulator, "bridge-bad", [CallFunction(name, arguments)])
    [output] = outputs(realtime_emulator)
    assert output["ok"] is False and output["error"] == error and output["message"]
    assert kiosk.of_type("visit.updated") == []  # nothing changed
    assert any(event["type"] == "response.create" for event in realtime_emulator.received)


@pytest.mark.parametrize("raw", ['{"visitor_name": "山田', "[1, 2", "null"])
async def test_bad_or_partial_json_gets_a_structured_error_output(realtime_emulator, raw):
    await start("bridge-json")
    await run_calls(realtime_emulator, "bridge-json", [CallFunction("collect_visitor_info", {})], raw_arguments=raw)
    [output] = outputs(realtime_emulator)
    assert output["ok"] is False
    assert output["error"] in ("invalid_json", "invalid_arguments")


async def test_a_legacy_conversation_continues_through_function_calls_without_asking_again(realtime_emulator):
    await start("to-realtime")
    await run_blocking(workflow.handle_text)("to-realtime", "株式会社テストの山田太郎です")

    instructions = await LangGraphBridge("to-realtime", FakeKiosk()).instructions("ja")
    assert "株式会社テスト" in instructions and "山田太郎" in instructions
    assert "Still missing: purpose of the visit, person visited" in instructions
    assert "ご用件" in instructions  # the pending question

    calls = [
        CallFunction("collect_visitor_info", {"purpose": "打ち合わせ", "host_name": "鈴木"}),
        CallFunction("confirm_visitor_info", {"confirmed": True}),
    ]
    kiosk = await run_calls(realtime_emulator, "to-realtime", calls)
    confirm, done = outputs(realtime_emulator)
    assert "確認いたします" in confirm["reply"] and "山田太郎" in confirm["reply"]
    assert "お名前" not in confirm["reply"] and "会社名" not in confirm["reply"]
    assert done["finished"] is True and done["visit"]["status"] == "host_notified"
    assert kiosk.of_type("visit.updated")[-1]["status"] == "host_notified"


async def test_a_realtime_conversation_continues_in_legacy_without_asking_again(realtime_emulator):
    await start("to-legacy")
    arguments = {"company_name": "株式会社テスト", "visitor_name": "山田太郎", "purpose": "打ち合わせ"}
    await run_calls(realtime_emulator, "to-legacy", [CallFunction("collect_visitor_info", arguments)])

    turn = await run_blocking(workflow.handle_text)("to-legacy", "鈴木さんです")
    assert "確認いたします" in turn.reply and "株式会社テスト" in turn.reply
    turn = await run_blocking(workflow.handle_text)("to-legacy", "はい")
    assert turn.finished and turn.visit["status"] == "host_notified"


def test_instructions_say_what_is_collected_missing_and_pending():
    assert "Nothing has been collected yet" in build_instructions(None, "en")
    snapshot = workflow.TurnResult(
        reply="Could you tell me your name?",
        visit={
            "visitor_name": "",
            "company_name": "Acme Corp",
            "purpose": "",
            "host_name": "Ken Sato",
            "visitor_type": "unknown",
            "status": "collecting",
        },
        finished=False,
    )
    text = build_instructions(snapshot, "en")
    assert "Speak English" in text
    assert "Collected: company: Acme Corp; person visited: Ken Sato" in text
    assert "Still missing: visitor's name, purpose of the visit" in text
    assert "Could you tell me your name?" in text
    assert text_to_say(say_exactly(text, "Welcome.")) == "Welcome."
    assert text_to_say(text) is None
