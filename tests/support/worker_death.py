"""A worker dies under live kiosks: two workers behind nginx, SIGKILL one, and the kiosks it held reconnect
through nginx to the other and continue their visits (used by `tests/project/test_worker_death.py` and
`benchmarks/worker_death.py`).

Each kiosk holds a Realtime session (the bundled emulator upstream) that has collected the visitor's name. After
the kill, a kiosk whose socket closed reconnects at once (the kiosk page waits a second first) with the same
session id, and the visit goes on: the name is still there, the session keeps its routing decision, and its next
turn is answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets

from tests.load_test_realtime import create_kiosks
from tests.support.load_upstream import percentiles
from tests.support.realtime import realtime_everywhere
from tests.support.serve_fleet import Fleet, serving

NAME_LINE = "株式会社テストの山田太郎です。"
HOST_LINE = "鈴木さんと10時にお約束があります。"


@dataclass
class Kiosk:
    """One kiosk's session as it saw it: its routing decision, the visit so far, and how a reconnect went."""

    key: str
    session_id: str
    decision: tuple[str, str] = ("", "")
    visit: dict = field(default_factory=dict)
    ws: websockets.ClientConnection | None = None
    cut: bool = False
    resumed_after: float | None = None  # seconds from the kill to the resumed session.started
    problems: list[str] = field(default_factory=list)


async def exchange(ws, message: dict | None, until: tuple[str, ...] = ("response.done", "error")) -> list[dict]:
    """Send `message` (if any) and read the JSON messages up to one of `until` (audio skipped)."""
    if message is not None:
        await ws.send(json.dumps(message, ensure_ascii=False))
    replies = []
    async with asyncio.timeout(30):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str):
                replies.append(json.loads(frame))
                if replies[-1]["type"] in until:
                    return replies


def latest(messages: list[dict], kind: str) -> dict:
    found = [message for message in messages if message["type"] == kind]
    return found[-1] if found else {}


async def open_session(kiosk: Kiosk, fleet: Fleet) -> list[dict]:
    """Connect through nginx and start (or resume) the kiosk's session: its messages up to the first answer."""
    headers = {"Authorization": f"Bearer {kiosk.key}"}
    kiosk.ws = await websockets.connect(fleet.url, ssl=fleet.ssl, additional_headers=headers, open_timeout=10)
    return await exchange(kiosk.ws, {"type": "session.start", "session_id": kiosk.session_id, "language": "ja"})


async def begin(kiosk: Kiosk, fleet: Fleet) -> None:
    """Greeting, then the visitor's name: what a kiosk holds when its worker dies."""
    started = await open_session(kiosk, fleet)
    kiosk.decision = (latest(started, "session.started")["mode"], latest(started, "session.started")["reason"])
    kiosk.visit = latest(await exchange(kiosk.ws, {"type": "input_text", "text": NAME_LINE}), "visit.updated")


async def ride_out(kiosk: Kiosk, fleet: Fleet, killed_at: float) -> None:
    """Wait for the socket to close (the kiosk was on the killed worker) or for the kill to be over; a cut kiosk
    reconnects and resumes; then every kiosk takes its next turn."""
    try:
        async with asyncio.timeout(3):  # a killed worker's sockets close at once (the kernel resets them)
            await kiosk.ws.wait_closed()
        kiosk.cut = True
    except TimeoutError:
        pass  # on the worker that lives
    if kiosk.cut:
        resumed = await reconnect(kiosk, fleet, killed_at)
        started = latest(resumed, "session.started")
        if (started.get("mode"), started.get("reason")) != kiosk.decision:
            kiosk.problems.append(f"decision {kiosk.decision} became {started.get('mode'), started.get('reason')}")
        if latest(resumed, "visit.updated").get("visitor_name") != kiosk.visit.get("visitor_name"):
            kiosk.problems.append(f"name lost: {latest(resumed, 'visit.updated')}")
    turn = await exchange(kiosk.ws, {"type": "input_text", "text": HOST_LINE})
    visit = latest(turn, "visit.updated")
    if turn[-1]["type"] != "response.done" or visit.get("visitor_name") != kiosk.visit.get("visitor_name"):
        kiosk.problems.append(f"next turn: {turn[-1]['type']}, visit {visit}")
    await kiosk.ws.close()


async def reconnect(kiosk: Kiosk, fleet: Fleet, killed_at: float) -> list[dict]:
    """Reconnect through nginx until a worker takes the session (a refused attempt retried after 0.1 s)."""
    async with asyncio.timeout(30):
        while True:
            try:
                resumed = await open_session(kiosk, fleet)
                kiosk.resumed_after = time.monotonic() - killed_at
                return resumed
            except (OSError, websockets.WebSocketException):
                await asyncio.sleep(0.1)


async def kill_a_worker(sessions: int, directory: Path) -> dict:
    """The whole scenario; returns sessions cut and resumed, reconnect times, and the problems seen."""
    async with realtime_everywhere(directory, "redis://127.0.0.1:6379/8") as setup:
        kiosks = [Kiosk(key, f"death-{n}") for n, key in enumerate(create_kiosks(setup, sessions))]
        with serving(setup.env, 2, directory) as fleet:
            await asyncio.gather(*(begin(kiosk, fleet) for kiosk in kiosks))
            killed_at = time.monotonic()
            os.kill(fleet.pids[0], signal.SIGKILL)
            await asyncio.gather(*(ride_out(kiosk, fleet, killed_at) for kiosk in kiosks))
    return summary(kiosks)


def summary(kiosks: list[Kiosk]) -> dict:
    times = [kiosk.resumed_after for kiosk in kiosks if kiosk.resumed_after is not None]
    return {
        "sessions": len(kiosks),
        "cut": sum(kiosk.cut for kiosk in kiosks),
        "resumed": len(times),
        "reconnect_s": {**percentiles(times), "max": max(times, default=None)},
        "decisions_kept": all(not any("decision" in p for p in kiosk.problems) for kiosk in kiosks),
        "problems": {kiosk.session_id: kiosk.problems for kiosk in kiosks if kiosk.problems},
    }
