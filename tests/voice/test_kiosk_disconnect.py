"""A kiosk that closes its socket mid-reply leaves no traceback in the log."""

from __future__ import annotations

import logging
import threading

import pytest
from channels.testing import WebsocketCommunicator
from uvicorn.protocols.utils import ClientDisconnected

from reception_project.asgi import application
from speech.engines import SpeechEngines

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_workflow_state")]


class SlowVoice:
    """Text to speech that takes a moment per sentence: the reply is still streaming when the kiosk leaves."""

    sample_rate = 24_000

    def synthesize(self, text: str, language: str) -> bytes:
        threading.Event().wait(0.05)
        return b"\x01\x00" * 24_000  # 1 s per sentence, sent in 100 ms frames


class ClosingBrowser:
    """uvicorn after a browser went away: once it has had its first audio, sends raise its ClientDisconnected
    (the socket is closing, its disconnect event is not yet delivered)."""

    def __init__(self, app) -> None:
        self.app = app
        self.gone = False

    async def __call__(self, scope, receive, send):
        async def browser_send(message):
            if self.gone and message["type"] == "websocket.send":
                raise ClientDisconnected()
            await send(message)
            if message.get("bytes"):
                self.gone = True

        await self.app(scope, receive, browser_send)


async def test_a_kiosk_closing_while_the_reply_is_spoken_logs_no_error(
    demo_directory, kiosk_and_key, caplog, monkeypatch
):
    engines = SpeechEngines(kind="local", stt=None, tts=SlowVoice(), vad_factory=None)
    monkeypatch.setattr("voice.legacy.legacy_engines", lambda: engines)
    _, key = kiosk_and_key
    browser = ClosingBrowser(application)
    ws = WebsocketCommunicator(browser, "/ws/kiosk/", headers=[(b"authorization", f"Bearer {key}".encode())])
    assert (await ws.connect())[0]
    caplog.set_level(logging.INFO)
    await ws.send_json_to({"type": "session.start", "language": "ja", "voice": True})  # the greeting is spoken
    while not (await ws.receive_output(timeout=10)).get("bytes"):
        pass
    # The greeting keeps streaming into the closed socket until the disconnect arrives.
    await ws.send_json_to({"type": "input_text", "text": "株式会社テストの山田太郎です"})
    await ws.disconnect()  # raises if an exception escaped the consumer
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    assert any("went away mid-reply" in r.getMessage() for r in caplog.records)
