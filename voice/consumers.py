"""The kiosk socket `/ws/kiosk/`: authenticate, validate frames, hand them to the session, send back.

The consumer stays thin: validation lives in `voice.protocol`, the conversation in
`reception.workflow`; blocking work (database, workflow) runs in worker threads.
"""

from __future__ import annotations

import json
import logging
import uuid

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from reception import workflow
from reception.models import Visit

from .kiosk_auth import authenticate_kiosk, origin_allowed
from .protocol import KioskMessage, ProtocolError, parse_text_frame

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403


def run_blocking(func):
    """Run a blocking (database, workflow) call in the thread pool, not the single sync thread."""
    return database_sync_to_async(func, thread_sensitive=False)


def _session_owned_elsewhere(session_id: str, kiosk_id: int) -> bool:
    return Visit.objects.filter(session_id=session_id).exclude(kiosk_id=kiosk_id).exists()


class KioskConsumer(AsyncWebsocketConsumer):
    """One kiosk connection; at most one reception session at a time."""

    kiosk = None
    session_id: str | None = None
    language = "ja"

    async def connect(self) -> None:
        if not origin_allowed(self.scope):
            await self.close(code=CLOSE_FORBIDDEN_ORIGIN)
            return
        self.kiosk = await run_blocking(authenticate_kiosk)(self.scope)
        await self.accept()
        if self.kiosk is None:
            # Accept first so a browser can show why; then close.
            await self.send_error(
                ProtocolError("unauthorized", "This kiosk is not recognised: send its key or pair it from the admin.")
            )
            await self.close(code=CLOSE_UNAUTHORIZED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.kiosk is None:
            return
        try:
            if bytes_data is not None:
                await self.receive_audio(bytes_data)
            else:
                await self.dispatch_message(parse_text_frame(text_data or ""))
        except ProtocolError as error:
            await self.send_error(error)

    async def dispatch_message(self, message: KioskMessage) -> None:
        if message.type == "session.start":
            await self.start_session(**message.fields)
            return
        if self.session_id is None:
            raise ProtocolError("session_not_started", "Send session.start first.")
        if message.type == "input_text":
            await self.answer_text(message.fields["text"])
        elif message.type == "session.end":
            await self.end_session("client_ended")
        else:
            await self.receive_audio_control(message)

    async def start_session(self, session_id: str | None, language: str) -> None:
        if self.session_id is not None:
            raise ProtocolError("session_already_started", "This connection already has a session.")
        session_id = session_id or uuid.uuid4().hex
        if await run_blocking(_session_owned_elsewhere)(session_id, self.kiosk.pk):
            raise ProtocolError("session_forbidden", "That session belongs to another kiosk.")
        self.session_id, self.language = session_id, language
        reason = "realtime_disabled" if not settings.FEATURE_REALTIME_MODE_ENABLED else "realtime_unavailable"
        await self.send_json({"type": "session.started", "session_id": session_id, "mode": "legacy", "reason": reason})
        turn = await run_blocking(workflow.start)(session_id, language, self.kiosk.pk)
        await self.send_turn(turn)

    async def answer_text(self, text: str) -> None:
        await self.send_json({"type": "transcript", "role": "visitor", "text": text, "final": True})
        turn = await run_blocking(workflow.handle_text)(self.session_id, text)
        await self.send_turn(turn)

    async def end_session(self, reason: str) -> None:
        visit_id = await run_blocking(workflow.end)(self.session_id, reason)
        await self.send_json({"type": "session.ended", "reason": reason, "visit_id": visit_id})
        self.session_id = None
        await self.close()

    async def receive_audio(self, data: bytes) -> None:
        if self.session_id is None:
            raise ProtocolError("session_not_started", "Send session.start first.")
        if len(data) > settings.KIOSK_MAX_FRAME_BYTES:
            raise ProtocolError("frame_too_large", f"Frames are limited to {settings.KIOSK_MAX_FRAME_BYTES} bytes.")
        raise ProtocolError("audio_unavailable", "Voice input is not available on this server; please type.")

    async def receive_audio_control(self, message: KioskMessage) -> None:
        if message.type == "response.cancel":
            return  # Text replies are sent whole; there is nothing to stop.
        raise ProtocolError("audio_unavailable", "Voice input is not available on this server; please type.")

    async def send_turn(self, turn: workflow.TurnResult) -> None:
        """One assistant turn: its words, what has been collected, and the end-of-turn marker."""
        await self.send_json({"type": "transcript", "role": "assistant", "text": turn.reply, "final": True})
        await self.send_json({"type": "visit.updated", **turn.visit})
        await self.send_json({"type": "response.done"})

    async def send_error(self, error: ProtocolError) -> None:
        logger.info("kiosk %s session %s error %s", getattr(self.kiosk, "pk", None), self.session_id, error.code)
        await self.send_json(error.as_message())

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=json.dumps(content, ensure_ascii=False))
