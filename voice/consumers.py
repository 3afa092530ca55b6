"""The kiosk socket `/ws/kiosk/`: authenticate, validate frames, hand them to the session, send back.

The consumer stays thin: validation lives in `voice.protocol`, the choice and switch of voice path
in `voice.hybrid`, the conversation in `reception.workflow`. Every connection joins the control
group, so an emergency stop reaches each live session in every process.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from functools import partial

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from uvicorn.protocols.utils import ClientDisconnected

from core.blocking import run_blocking
from core.dispatch import dispatch_in_turn
from core.logs import bind_log_context
from fallback.emergency import CONTROL_GROUP
from fallback.watch import stop_watching_emergencies, watch_emergencies
from reception import workflow
from reception.models import Visit

from .hybrid import HybridVoiceManager
from .idle import IdleWatchdog
from .kiosk_auth import authenticate_kiosk, origin_allowed
from .legacy import decode_audio_append
from .protocol import KioskMessage, ProtocolError, parse_text_frame
from .rate_limits import (
    CLOSE_FLOODING,
    CLOSE_REPLACED,
    ConnectionCap,
    KioskRateLimits,
    RateLimited,
    StillFlooding,
    kiosk_group,
)

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403


def _session_owned_elsewhere(session_id: str, kiosk_id: int) -> bool:
    return Visit.objects.filter(session_id=session_id).exclude(kiosk_id=kiosk_id).exists()


def _client_address(scope: dict) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class KioskConsumer(AsyncWebsocketConsumer):
    """One kiosk connection; at most one reception session at a time."""

    kiosk = None
    voice_path: HybridVoiceManager | None = None
    rate_limits: KioskRateLimits | None = None
    connection_cap: ConnectionCap | None = None
    closing = False  # we closed the socket, or the kiosk went away: nothing more is read or sent
    idle: IdleWatchdog | None = None

    async def __call__(self, scope, receive, send) -> None:
        """Channels' `AsyncConsumer.__call__`, with the frame-rate loop of `core.dispatch` in place of its own."""
        self.scope, self.base_send = scope, send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        channel_receive = partial(self.channel_layer.receive, self.channel_name)
        try:
            await dispatch_in_turn([receive, channel_receive], self.dispatch)
        except StopConsumer:
            pass
        finally:  # however the connection dies, the watchdog dies with it, and its refusals are counted
            await self.stop_idle_watchdog()
            if self.rate_limits is not None:
                await self.rate_limits.counted()

    async def connect(self) -> None:
        if not origin_allowed(self.scope):
            await self.close(code=CLOSE_FORBIDDEN_ORIGIN)
            return
        self.rate_limits = KioskRateLimits()
        address = _client_address(self.scope)
        try:
            await self.rate_limits.address_open(address)
            kiosk = await run_blocking(authenticate_kiosk)(self.scope)
            if kiosk is not None:
                await self.rate_limits.kiosk_connect(kiosk)
            await self.rate_limits.address_connected(address)
        except StillFlooding as refusal:
            # Refused at the handshake: the socket never opens, so there is nothing to flood.
            self.rate_limits.count(refusal.limit)
            await self.close_socket()
            return
        except RateLimited as refusal:
            # Accept first so a browser can show why; then close.
            await self.accept()
            await self.rate_limits.refused(refusal)
            await self.send_error(refusal)
            await self.close_socket(CLOSE_FLOODING)
            return
        self.kiosk = kiosk
        await self.accept()
        if self.kiosk is None:
            await self.send_error(
                ProtocolError("unauthorized", "This kiosk is not recognised: send its key or pair it from the admin.")
            )
            await self.close_socket(CLOSE_UNAUTHORIZED)
            return
        await self.channel_layer.group_add(CONTROL_GROUP, self.channel_name)
        watch_emergencies()
        self.connection_cap = ConnectionCap(self.channel_name, settings.KIOSK_MAX_CONNECTIONS_PER_KIOSK)
        await self.channel_layer.group_add(kiosk_group(self.kiosk), self.channel_name)
        await self.channel_layer.group_send(kiosk_group(self.kiosk), self.connection_cap.announcement("kiosk.joined"))

    async def disconnect(self, code: int) -> None:
        # The conversation stays checkpointed: reconnecting with the session id continues it.
        self.closing = True
        if self.kiosk is not None:
            await self.channel_layer.group_discard(CONTROL_GROUP, self.channel_name)
            stop_watching_emergencies()
        if self.connection_cap is not None:
            await self.channel_layer.group_discard(kiosk_group(self.kiosk), self.channel_name)
            await self.channel_layer.group_send(kiosk_group(self.kiosk), self.connection_cap.announcement("kiosk.left"))
        await self.stop_idle_watchdog()
        if self.voice_path is not None:
            await self.voice_path.close("abandoned")

    async def kiosk_joined(self, event: dict) -> None:
        """Another connection of this kiosk opened: the oldest close once the kiosk has too many."""
        if not self.closing and self.connection_cap.joined(event):
            await self.send_error(ProtocolError("replaced", "This kiosk connected again; this connection is closed."))
            await self.close_socket(CLOSE_REPLACED)

    async def kiosk_left(self, event: dict) -> None:
        self.connection_cap.left(event)

    async def control_emergency(self, event: dict) -> None:
        """Emergency broadcast from `fallback.emergency`: live Realtime sessions move to Legacy."""
        if self.voice_path is not None:
            await self.voice_path.on_emergency(event)

    async def kiosk_idle(self, event: dict) -> None:
        """From the idle watchdog, through this consumer's queue so it never races a frame being handled."""
        if self.voice_path is not None and self.idle is not None and self.idle.is_idle():
            await self.end_session("idle")

    async def dispatch(self, message: dict) -> None:
        """Frames skip Channels' per-message database tidy-up, a hop to the one sync thread every connection
        shares (a flood would queue one per frame): every database call of this consumer goes through
        `core.blocking.run_blocking` (Channels' `database_sync_to_async`), which tidies its own thread. A refused
        frame costs no thread at all."""
        if message["type"] != "websocket.receive":
            await super().dispatch(message)
        elif await self.admit_frame():
            began = time.monotonic()
            await self.websocket_receive(message)
            self.rate_limits.stalled(time.monotonic() - began)  # what came meanwhile came at the kiosk's pace

    async def admit_frame(self) -> bool:
        """Whether a frame from the kiosk is read: not after the close, not over the frame rate."""
        if self.kiosk is None or self.closing:
            return False
        try:
            await self.rate_limits.message()
        except RateLimited as refusal:
            await self.refuse(refusal)
            return False
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if bytes_data is not None:
                await self.receive_audio(bytes_data)
            else:
                await self.dispatch_message(parse_text_frame(text_data or ""))
        except RateLimited as refusal:
            await self.refuse(refusal)
        except ProtocolError as error:
            await self.send_error(error)

    async def refuse(self, refusal: RateLimited) -> None:
        """`rate_limited` for a refused frame; the socket closes with 4429 once the kiosk keeps flooding."""
        await self.send_error(refusal)
        if await self.rate_limits.refused(refusal):
            logger.warning("kiosk %s keeps flooding (%s): closed", self.kiosk.pk, refusal.limit)
            await self.close_socket(CLOSE_FLOODING)

    async def dispatch_message(self, message: KioskMessage) -> None:
        if message.type == "session.start":
            await self.start_session(**message.fields)  # the kiosk's microphone streams on meanwhile
            return
        if self.voice_path is None:
            raise ProtocolError("session_not_started", "Send session.start first.")
        if message.type == "input_text":
            self.idle.visitor_active(turn=True)
            await self.voice_path.handle_text(message.fields["text"])
        elif message.type == "input_audio.append":
            await self.receive_audio(decode_audio_append(message.fields["audio"]))
        elif message.type == "input_audio.commit":
            self.idle.visitor_active(turn=True)
            await self.voice_path.commit()
        elif message.type == "response.cancel":
            await self.voice_path.interrupt()
        elif message.type == "session.end":
            await self.end_session("client_ended")
        elif message.type == "feedback":
            if message.fields["session_id"] != self.voice_path.session_id:
                raise ProtocolError("session_forbidden", "feedback is for this connection's session only.")
            await self.voice_path.feedback(message.fields["rating"])

    async def start_session(self, session_id: str | None, language: str, voice: bool) -> None:
        """`voice`: the kiosk listens and speaks, so replies are spoken from the greeting on."""
        if self.voice_path is not None:
            raise ProtocolError("session_already_started", "This connection already has a session.")
        resumed = session_id is not None
        session_id = session_id or uuid.uuid4().hex
        bind_log_context(session_id=session_id, kiosk_id=self.kiosk.pk)
        if await run_blocking(_session_owned_elsewhere)(session_id, self.kiosk.pk):
            raise ProtocolError("session_forbidden", "That session belongs to another kiosk.")
        # A resumed session may hold a visitor's details: its clock runs from the start.
        self.idle = IdleWatchdog(settings.KIOSK_IDLE_TIMEOUT_SECONDS, self.report_idle, armed=resumed)
        self.idle.start()
        self.voice_path = HybridVoiceManager(session_id, language, self, speak=voice)
        await self.voice_path.open(self.kiosk.pk)

    async def report_idle(self) -> None:
        await self.channel_layer.send(self.channel_name, {"type": "kiosk.idle"})

    async def stop_idle_watchdog(self) -> None:
        if self.idle is not None:
            await self.idle.stop()

    async def end_session(self, reason: str) -> None:
        """`idle`: the visitor walked away, so the visit is abandoned; otherwise it is ended."""
        voice_path, self.voice_path = self.voice_path, None
        await self.stop_idle_watchdog()
        await voice_path.close("abandoned" if reason == "idle" else "completed")
        visit_id = await run_blocking(workflow.end)(voice_path.session_id, reason)
        await self.send_message({"type": "session.ended", "reason": reason, "visit_id": visit_id})
        await self.close_socket()

    async def receive_audio(self, pcm16: bytes) -> None:
        if self.voice_path is None:
            raise ProtocolError("session_not_started", "Send session.start first.")
        if len(pcm16) > settings.KIOSK_MAX_FRAME_BYTES:
            raise ProtocolError("frame_too_large", f"Frames are limited to {settings.KIOSK_MAX_FRAME_BYTES} bytes.")
        if not pcm16 or len(pcm16) % 2:
            raise ProtocolError("invalid_audio", "PCM16 audio has an even, non-zero number of bytes.")
        await self.rate_limits.audio(len(pcm16))
        await self.voice_path.feed_audio(pcm16)

    async def send_error(self, error: ProtocolError) -> None:
        session_id = self.voice_path.session_id if self.voice_path else None
        logger.info("kiosk %s session %s error %s", getattr(self.kiosk, "pk", None), session_id, error.code)
        await self.send_message(error.as_message())

    async def send_message(self, message: dict) -> None:
        if self.idle is not None:
            self.idle.saw_message(message)
        await self._send(text_data=json.dumps(message, ensure_ascii=False))

    async def send_audio(self, pcm16: bytes) -> None:
        if self.idle is not None:
            self.idle.saw_audio(len(pcm16))
        await self._send(bytes_data=pcm16)

    async def close_socket(self, code: int | None = None) -> None:
        self.closing = True
        if self.rate_limits is not None:  # the kiosk's refusals are in the shared counts before it sees the close
            await self.rate_limits.counted()
        await self.close(code=code)

    async def _send(self, **frame: str | bytes) -> None:
        """Send unless the socket is gone: a kiosk that closed mid-reply is not an error (its disconnect
        arrives next and stops the session)."""
        if self.closing:
            return
        try:
            await self.send(**frame)
        except ClientDisconnected:  # the kiosk closed the socket before its disconnect reached us
            self.closing = True
            logger.info(
                "kiosk %s went away mid-reply; the rest of the reply is dropped", getattr(self.kiosk, "pk", None)
            )
