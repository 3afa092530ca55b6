"""One corpus conversation spoken to the kiosk socket end to end, on the path the routing policy gives it.

The visitor is a kiosk on the real ASGI application (`WebsocketCommunicator`): it starts a voice session, waits
until the kiosk has played each reply out (at 1x, as the kiosk page does), speaks the next line in 20 ms frames
with the room's noise running on; between its lines the microphone streams the room, as a kiosk's does. The visitor
listens, as people do: a line the kiosk did not catch is said once more, the name is given again when the kiosk
asks for it, all their details when it asks for the correct ones, and a read-back naming another visitor, host or
time than theirs is corrected (spoken by the same voice) before they agree. At the end the session is ended and the
visit is read back from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import time
import uuid
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from fallback.emergency import apply_action
from metrics.collector import collector
from metrics.models import SessionMetric
from reception.demo import DEMO_STAFF
from reception.models import StaffMember, Visit
from reception.workflow.prompts import field_list, say
from tests.support.corpus import Conversation, Line, differences, plain
from tests.support.kiosk_client import connect
from tests.support.speech_text import int_to_english, int_to_kanji
from tests.support.spoken import Microphone, spoken

FINAL = {"host_notified", "sent_to_desk", "delivery_guided", "declined"}
BYTES_PER_SECOND = 48_000  # PCM16 24 kHz
REPLY_WAIT = 60.0  # seconds for a reply on a loaded 2-core machine
LEAD_IN = 300  # ms of room before the visitor speaks
MAX_CORRECTIONS = 2  # read-backs a visitor corrects before giving up and agreeing
SETTLE = 2.5  # seconds of nothing more from the kiosk after an answer to a line said with a pause
SILENT = 15.0  # seconds after which a visitor takes the kiosk's silence for not having been heard


@dataclass
class Result:
    """How one conversation went on one path: the fields that came out wrong, turns, re-asks, reply latencies."""

    conversation: Conversation
    path: str
    wrong: list[str] = field(default_factory=list)
    visitor_turns: int = 0
    reasks: int = 0
    first_audio: list[float] = field(default_factory=list)  # seconds from the end of speech, per answered line
    exchange: list[tuple[str, str]] = field(default_factory=list)  # (visitor|assistant, what was heard or said)

    @property
    def heard(self) -> list[str]:
        """The visitor's words as the path recognised them."""
        return [text for role, text in self.exchange if role == "visitor"]

    @property
    def right(self) -> bool:
        return not self.wrong


class KioskEar:
    """What the kiosk received: messages as they come, and until when it is still playing the replies at 1x."""

    def __init__(self, ws: WebsocketCommunicator) -> None:
        self.ws = ws
        self.messages: list[dict] = []
        self.audio_at: list[float] = []  # arrival of each audio chunk
        self.played_until = 0.0
        self.closed = False
        self._changed = asyncio.Condition()

    async def listen(self) -> None:
        while True:
            output = await self.ws.receive_output(timeout=3600)
            async with self._changed:
                now = time.monotonic()
                if output.get("bytes") is not None:
                    self.audio_at.append(now)
                    self.played_until = max(self.played_until, now) + len(output["bytes"]) / BYTES_PER_SECOND
                elif output.get("type") == "websocket.close":
                    self.closed = True
                else:
                    self.messages.append(json.loads(output["text"]))
                self._changed.notify_all()
            if self.closed:
                return

    async def wait(self, condition, within: float = REPLY_WAIT) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: condition() or self.closed)

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    def status(self) -> str:
        updates = self.of_type("visit.updated")
        return updates[-1]["status"] if updates else ""


def _opening(key: str, language: str, *fields: str) -> str:
    """The fixed words a prompt of the reception begins with (before its first filled-in field)."""
    return say(key, language, **dict.fromkeys(fields, "\0")).split("\0")[0]


def _asks_for(reply: str, detail: str, language: str) -> bool:
    """Whether the kiosk's reply asks for `detail` (a visit field) as a missing or an unclear one."""
    asking = (_opening("ask_missing", language, "fields"), _opening("ask_unclear", language, "fields"))
    return reply.startswith(asking) and field_list([detail], language) in reply


def _did_not_catch(reply: str, language: str) -> bool:
    """Whether the kiosk's reply asks the visitor to say it again (it could not make the words out)."""
    return reply.startswith(_opening("ask_unclear", language, "fields")) or reply == say("confirm_unclear", language)


class Visitor:
    """One visitor at the kiosk: speaks the conversation's lines, in real time or (`pace=False`) as fast as the
    path takes them; waits for the kiosk to play each reply out when `play_out`."""

    def __init__(self, ear: KioskEar, conversation: Conversation, *, pace: bool, play_out: bool) -> None:
        self.ear, self.conversation = ear, conversation
        self.pace, self.play_out = pace, play_out
        self.microphone = Microphone()
        self.first_audio: list[float] = []
        self._next_frame_at = time.monotonic()
        self._speaking = asyncio.Lock()  # held while the visitor speaks; the room fills the microphone otherwise

    async def _send(self, frames: list[bytes]) -> None:
        """Frames to the kiosk socket, each at its time on the microphone's 20 ms clock when paced."""
        for frame in frames:
            if self.pace:
                await asyncio.sleep(max(0.0, self._next_frame_at - time.monotonic()))
                self._next_frame_at += 0.02
            await self.ear.ws.send_input({"type": "websocket.receive", "bytes": frame})

    async def say(self, line: Line) -> str | None:
        """Say `line`; the kiosk's last reply once it is done, or None when it said nothing at all."""
        if self.play_out:
            await asyncio.sleep(max(0.0, self.ear.played_until - time.monotonic()))
        speech = spoken(line, self.conversation.language)
        self.microphone.hear(line, speech)
        done_before = len(self.ear.of_type("response.done"))
        async with self._speaking:
            await self._send(self.microphone.frames(bytes(LEAD_IN * 48) + speech))
        end_of_speech, audio_before = time.monotonic(), len(self.ear.audio_at)
        if not await self._room_until_answered(audio_before, len(self.ear.of_type("response.done"))):
            return None
        if len(self.ear.audio_at) > audio_before:
            self.first_audio.append(self.ear.audio_at[audio_before] - end_of_speech)
        await self.ear.wait(lambda: self._answered_after(done_before))
        if "|" in line.text:  # the pause may have made two turns of the line: the last answer is the one for it
            await self._settled(done_before)
        replies = [m for m in self.ear.of_type("transcript") if m.get("role") == "assistant" and m.get("final")]
        return replies[-1]["text"] if replies else ""

    async def _room_until_answered(self, audio_before: int, done_before: int) -> bool:
        """Until the kiosk answers (True), or has said nothing for SILENT seconds; unpaced, 2 s of the room first."""

        def answered() -> bool:
            return len(self.ear.audio_at) > audio_before or len(self.ear.of_type("response.done")) > done_before

        if not self.pace:
            await self._send([self.microphone.quiet() for _ in range(100)])  # 2 s: enough to end any turn
        with contextlib.suppress(TimeoutError):
            await self.ear.wait(answered, within=SILENT)
        return answered()

    async def _room(self) -> None:
        """The microphone between the visitor's lines, as a kiosk's streams: the room, in real time, all along
        (through the kiosk's replies too, and after a line said with a pause, whose end the paths wait for)."""
        while True:
            async with self._speaking:
                await self._send([self.microphone.quiet()])

    async def _settled(self, done_before: int) -> None:
        """Until the kiosk has sent nothing more for SETTLE seconds after a completed answer."""
        while True:
            try:
                seen = len(self.ear.messages)
                await self.ear.wait(functools.partial(self._more_than, seen), within=SETTLE)
            except TimeoutError:
                return
            await self.ear.wait(lambda: self._answered_after(done_before))

    def _more_than(self, seen: int) -> bool:
        return len(self.ear.messages) > seen

    def _answered_after(self, done_before: int) -> bool:
        """A reply completed since the line began and no other is on its way (a pause may have started two)."""
        done = self.ear.of_type("response.done")[done_before:]
        return any(m.get("status") == "completed" for m in done) and done[-1].get("status") == "completed"

    async def converse(self) -> None:
        room = asyncio.ensure_future(self._room()) if self.pace else None
        try:
            await self._converse()
        finally:
            if room is not None:
                room.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await room

    async def _converse(self) -> None:
        reply: str | None = ""
        for line in self.conversation.lines:
            for _ in range(MAX_CORRECTIONS):
                correction = self._correction(reply, line)
                if correction is None or self.ear.status() in FINAL:
                    break
                reply = await self.say(correction)  # a visitor who listens: the read-back is not what they said
            if self.ear.status() in FINAL:
                return
            reply = await self.say(line)
            if (reply is None or _did_not_catch(reply, self.conversation.language)) and self.ear.status() not in FINAL:
                reply = await self.say(line)  # as a visitor does: the same words again

    def _correction(self, reply: str | None, next_line: Line) -> Line | None:
        """What a visitor who listens says before the next line (see `_answer`), in the next line's voice."""
        said = self._answer(reply, next_line) if reply else None
        return None if said is None else Line(said, next_line.speed, next_line.noise)

    def _answer(self, reply: str, next_line: Line) -> str | None:
        """Their name again when the kiosk asks for it (it did not get it); when the next line would only agree:
        the host when the kiosk asks for them, all their details when it asks for the correct ones, their name when
        the read-back names someone else, or the host and time when the read-back names others than theirs."""
        expected, language = self.conversation.expected, self.conversation.language
        if expected.visitor_name and _asks_for(reply, "visitor_name", language):
            return f"{expected.visitor_name}です。" if language == "ja" else f"My name is {expected.visitor_name}."
        if not (next_line.text.startswith(("はい", "Yes")) and expected.host):
            return None
        host = _host_as_said(expected.host, language)
        if _asks_for(reply, "host_name", language):
            return f"{host}さんです。" if language == "ja" else f"{host}, please."
        if expected.visitor_type != "appointment":
            return None
        if reply == say("ask_correction", language):
            if language == "ja":
                return f"{expected.company_name}の{expected.visitor_name}です。{self._appointment(host)}"
            return f"My name is {expected.visitor_name} from {expected.company_name}. {self._appointment(host)}"
        if not reply.startswith(_opening("confirm", language, "company", "name", "host", "purpose")):
            return None
        if expected.visitor_name and plain(expected.visitor_name) not in plain(reply):
            name = expected.visitor_name
            return f"いいえ、{name}です。" if language == "ja" else f"No, my name is {name}."
        if host in reply and expected.purpose in reply:
            return None
        return f"いいえ、{self._appointment(host)}" if language == "ja" else f"No, {self._appointment(host)}"

    def _appointment(self, host: str) -> str:
        """Their appointment as they say it: 「鈴木さんと十時のお約束です。」, "I have an appointment with …"."""
        hour = int(re.search(r"\d+", self.conversation.expected.purpose)[0])
        if self.conversation.language == "ja":
            return f"{host}さんと{int_to_kanji(hour)}時のお約束です。"
        return f"I have an appointment with {host} at {int_to_english(hour % 12 or 12)} o'clock."


def _host_as_said(host: str, language: str) -> str:
    """The host (a name of the demo directory) as a visitor says it: the family name, or the name in romaji."""
    staff = next(p for p in DEMO_STAFF if p["name"] == host)
    return staff["name"].split()[0] if language == "ja" else staff["romaji"]


def set_presence(names: tuple[str, ...], present: bool) -> None:
    """Staff in or out of the office (the directory's version moves, so every process sees it)."""
    StaffMember.objects.filter(name__in=names).update(is_present=present, updated_at=timezone.now())


def route_to(path: str) -> None:
    """The routing policy sends every new session to `path` ("realtime" or "legacy")."""
    apply_action("enable", actor="corpus", reason="spoken corpus")
    percent = 100 if path == "realtime" else 0
    apply_action("set_rollout_percentage", actor="corpus", reason="spoken corpus", percent=percent)


def _stored(session_id: str) -> tuple[Visit | None, SessionMetric | None]:
    collector.flush()
    visit = Visit.objects.select_related("host").filter(session_id=session_id).first()
    return visit, SessionMetric.objects.filter(session_id=session_id).first()


async def speak_conversation(
    key: str, conversation: Conversation, path: str, *, pace: bool = True, play_out: bool = True
) -> Result:
    """Run `conversation` on a new kiosk session (routed to `path` by the caller, see `route_to`) and check the
    visit it leaves. `pace=False` sends audio as fast as the path takes it; `play_out=False` does not wait for the
    replies to be played out on Legacy (on Realtime the visitor always does: its barge-in follows the playback)."""
    session_id = f"corpus-{path}-{conversation.id}-{uuid.uuid4().hex[:6]}"
    result = Result(conversation, path)
    await database_sync_to_async(set_presence)(conversation.absent, False)
    ws = await connect(key)
    ear = KioskEar(ws)
    listener = asyncio.ensure_future(ear.listen())
    try:
        start = {"type": "session.start", "session_id": session_id, "language": conversation.language, "voice": True}
        await ws.send_json_to(start)
        await ear.wait(lambda: ear.of_type("response.done"))
        mode = ear.of_type("session.started")[0]["mode"]
        if mode != path:
            result.wrong.append(f"path: expected {path}, got {mode}")
        visitor = Visitor(ear, conversation, pace=pace, play_out=play_out or path == "realtime")
        await visitor.converse()
        result.first_audio = visitor.first_audio
        result.wrong += [f"path: moved to {m['mode']} ({m.get('reason', '')})" for m in ear.of_type("mode.changed")]
        await ws.send_json_to({"type": "session.end"})
        await ear.wait(lambda: ear.of_type("session.ended") or ear.closed, within=30)
    except TimeoutError:
        result.wrong.append(f"timed out: the kiosk did not answer (status {ear.status() or 'none'})")
    finally:
        result.exchange = [(m["role"], m["text"]) for m in ear.of_type("transcript") if m.get("final")]
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await ws.disconnect()
        await database_sync_to_async(set_presence)(conversation.absent, True)
    visit, metric = await database_sync_to_async(_stored)(session_id)
    result.wrong += differences(visit, conversation.expected)
    if metric is not None:
        result.visitor_turns, result.reasks = metric.visitor_turns, metric.reasks
    return result
