"""Load test: many kiosks streaming their microphones and holding whole reception conversations at once, on 127.0.0.1.

Starts a real server process (uvicorn, as `make run` does) over a fresh database with Realtime on for every
session (off with `--legacy`), and the upstream stand-in (`tests/support/load_upstream.py`: the bundled emulator with
a brain that costs next to nothing) in its own process. Each kiosk then holds conversations for `--duration` seconds
as the kiosk page does: its microphone streams 20 ms PCM16 frames at real-time pace the whole time (the visitor's
lines, spoken once by the local text-to-speech, then silence), the server VAD ends each turn, the visitor listens to
the reply and thinks before answering (`--text`: the visitor types instead, the microphone still streams).
Prints a live progress line, then sessions held and dropped, turns sent / answered / lost, end of speech → first
audio by path, the time the server adds to each frame in each direction (measured against the kiosk's and the
stand-in's timestamps, same clock), fallbacks by reason, errors by kind, the server's memory per session and (one
worker) its garbage-collection pauses during the run, from its /metrics. Exits 1 on any lost turn or dropped session.

A turn is lost when it gets neither an answer (`response.done`, on Realtime or on Legacy after a fallback) nor an
`error` within `--turn-timeout`; a greeting that never comes counts as a lost turn.

    python tests/load_test_realtime.py --sessions 50 --duration 300 [--text] [--brain reception] [--json PATH]
    python tests/load_test_realtime.py --workers 2 ...   # through `make serve`: N workers behind nginx (TLS)
    python tests/load_test_realtime.py --legacy --sessions 4 ...   # Realtime off: the local speech engines' load
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime import mask_keys
from tests.support.live_server import (
    CONNECTION_LIMITS_LIFTED,
    REPO,
    LiveServer,
    free_port,
    throwaway_database,
    wait_for_port,
)
from tests.support.load_upstream import FRAME_BYTES, SCRIPT, percentiles, stamp, stamp_age_ms
from tests.support.processes import cpu_seconds, rss_mb
from tests.support.serve_fleet import Fleet, serving
from tests.support.worker_collections import SCRAPE_TOKEN, with_collections

FRAME_SECONDS = 0.02
SILENCE = bytes(FRAME_BYTES)


def rendered_lines() -> list[list[bytes]]:
    """The visitor's lines, spoken once by the local Japanese text-to-speech, cut into 20 ms frames."""
    from speech.tts import OpenJTalkTTS

    tts = OpenJTalkTTS()
    lines = []
    for text, _, _ in SCRIPT:
        pcm = tts.synthesize(text, "ja")
        pcm += bytes(-len(pcm) % FRAME_BYTES)
        lines.append([pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)])
    return lines


@dataclass
class Tally:
    held: int = 0  # conversations that ran to session.ended
    dropped: int = 0
    live: int = 0
    turns_sent: int = 0
    answered: int = 0
    errored: int = 0
    lost: int = 0
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"realtime": [], "legacy": []})
    downstream_ms: list[float] = field(default_factory=list)
    fallbacks: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)  # "mode (reason)" of each session.started


class Dropped(Exception):
    """The server closed the kiosk's socket in the middle of a conversation."""


class Kiosk:
    """One kiosk socket: a microphone task, a reader task, and the visitor's side of the conversation."""

    def __init__(self, ws, lines: list[list[bytes]], tally: Tally, options: argparse.Namespace) -> None:
        self.ws, self.lines, self.tally, self.options = ws, lines, tally, options
        self.mode = "realtime"
        self.speech: list[bytes] = []  # frames still to speak, with their utterance number
        self.utterance = 0
        self.spoke_at = 0.0  # when the last frame of the visitor's speech (or the typed text) went out
        self.first_audio: float | None = None
        self.audio_bytes = 0
        self.outcome: asyncio.Future | None = None
        self.ended = asyncio.get_running_loop().create_future()
        self.spoken = asyncio.Event()  # the last frame of the line being said went out

    async def microphone(self) -> None:
        """20 ms frames at real-time pace, on an absolute schedule, for as long as the socket is open."""
        tick = time.monotonic()
        while True:
            frame = self.speech.pop(0) if self.speech else SILENCE
            if frame is SILENCE or self.mode == "realtime":
                # The stamp overwrites a frame's first samples: on speech, a 50 Hz train of 0.3 ms dropouts that
                # made Legacy's VAD miss a quick 「はい」 at 16 of 80 positions. The stand-in keys its script and
                # times the relay by it; a session on Legacy (`--legacy`, or after a fallback) has neither, so its
                # speech goes out as spoken.
                await self.ws.send(stamp(frame, self.utterance if frame is not SILENCE else 0))
            else:
                await self.ws.send(frame)
            if frame is not SILENCE and not self.speech:
                self.spoke_at = time.monotonic()
                self.outcome = asyncio.get_running_loop().create_future()
                self.spoken.set()
            tick = max(tick + FRAME_SECONDS, time.monotonic() - 0.2)  # a late generator catches up, not in a burst
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    async def reader(self) -> None:
        async for frame in self.ws:
            if isinstance(frame, bytes):
                self.on_audio(frame)
            else:
                self.on_message(json.loads(frame))

    def on_audio(self, pcm16: bytes) -> None:
        now = time.monotonic()
        if self.mode == "realtime" and len(pcm16) >= 12:
            self.tally.downstream_ms.append(stamp_age_ms(pcm16))
        if self.first_audio is None:
            self.first_audio = now
            if self.spoke_at:
                self.tally.latency_ms[self.mode].append((now - self.spoke_at) * 1000)
        self.audio_bytes += len(pcm16)

    def on_message(self, message: dict) -> None:
        kind = message["type"]
        if kind in ("session.started", "mode.changed"):
            self.mode = message["mode"]
            if kind == "session.started":
                self.tally.decisions[f"{message['mode']} ({message['reason']})"] += 1
            if kind == "mode.changed":
                self.tally.fallbacks[message["reason"]] += 1
        elif kind == "error":
            self.tally.errors[message["code"]] += 1
            if message["code"] != "rate_limited":  # a refused frame, not the answer to the turn
                self.settle("error")
        elif kind == "response.done":
            self.settle("answered")
        elif kind == "session.ended" and not self.ended.done():
            self.ended.set_result(message)

    def settle(self, how: str) -> None:
        if self.outcome is not None and not self.outcome.done():
            self.outcome.set_result(how)

    async def turn(self, number: int) -> None:
        """Say (or type) line `number` and wait for its answer; then listen to the reply and think."""
        self.first_audio, self.audio_bytes = None, 0
        self.tally.turns_sent += 1
        if self.options.text:
            self.spoke_at = time.monotonic()
            self.outcome = asyncio.get_running_loop().create_future()
            await self.ws.send(json.dumps({"type": "input_text", "text": SCRIPT[number][0]}, ensure_ascii=False))
        else:
            self.spoke_at, self.outcome, self.utterance = 0.0, None, number + 1
            self.spoken.clear()
            self.speech = list(self.lines[number])
            await self.spoken.wait()
        await self.await_outcome()

    async def await_outcome(self) -> None:
        try:
            how = await asyncio.wait_for(asyncio.shield(self.outcome), self.options.turn_timeout)
        except TimeoutError:
            self.tally.lost += 1
            return
        if how == "error":
            self.tally.errored += 1
            return
        self.tally.answered += 1
        if self.first_audio is not None:  # the visitor hears the reply out (the kiosk plays at 1x)
            await asyncio.sleep(max(0.0, self.first_audio + self.audio_bytes / 48_000 - time.monotonic()))
        await asyncio.sleep(random.uniform(0.5, 1.5) * self.options.think)


async def visit(kiosk: Kiosk, session_id: str) -> None:
    """One whole conversation: greeting, the visitor's lines, the end of the session."""
    kiosk.outcome = asyncio.get_running_loop().create_future()  # the greeting (not a visitor's turn)
    await kiosk.ws.send(json.dumps({"type": "session.start", "session_id": session_id, "voice": True}))
    await kiosk.await_outcome()
    for number in range(len(SCRIPT)):
        await kiosk.turn(number)
    await kiosk.ws.send(json.dumps({"type": "session.end"}))
    await asyncio.wait_for(kiosk.ended, kiosk.options.turn_timeout)


async def conversation(target: Fleet, key: str, session_id: str, lines, tally: Tally, options) -> None:
    """A conversation on its own socket; the socket closing before the end is a dropped session (raised)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(
        target.url, additional_headers=headers, max_size=None, compression=None, ssl=target.ssl
    ) as ws:
        kiosk = Kiosk(ws, lines, tally, options)
        script = asyncio.ensure_future(visit(kiosk, session_id))
        await asyncio.sleep(0)  # session.start goes first; the microphone streams from then on
        tasks = [asyncio.ensure_future(coroutine) for coroutine in (kiosk.microphone(), kiosk.reader())]
        tally.live += 1
        try:
            await asyncio.wait([script, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if not script.done():
                raise Dropped(f"socket_closed_{ws.close_code}")
            script.result()
            tally.held += 1
        finally:
            tally.live -= 1
            for task in (script, *tasks):
                task.cancel()
            await asyncio.gather(script, *tasks, return_exceptions=True)


async def kiosk_loop(target: Fleet, key: str, number: int, deadline: float, lines, tally: Tally, options) -> None:
    await asyncio.sleep(random.uniform(0, 2))  # kiosks do not all start on the same frame
    count = 0
    while time.monotonic() < deadline:
        try:
            await conversation(target, key, f"load-{number}-{count}", lines, tally, options)
        except Dropped as drop:
            tally.dropped += 1
            tally.errors[str(drop)] += 1
            await asyncio.sleep(1)  # the kiosk page reconnects after a second
        except (TimeoutError, OSError, websockets.WebSocketException) as error:
            tally.dropped += 1
            tally.errors[type(error).__name__] += 1
            await asyncio.sleep(1)
        count += 1


def wait_until_settled(*pids: int, timeout: float = 180.0) -> None:
    """Until the server has loaded its models in the background (its warm-up): two quiet seconds in a row."""
    deadline, quiet, last = time.monotonic() + timeout, 0, cpu_seconds(*pids)
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_seconds(*pids)
        quiet, last = (quiet + 1 if now - last < 0.1 else 0), now


def upstream_stats(port: int, reset: bool = False) -> dict:
    """The stand-in's kiosk → upstream samples (`reset`: and it starts afresh)."""
    path = "/stats?reset" if reset else "/stats"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


async def progress(tally: Tally, started: float, pids: list[int], memory: dict, stop: asyncio.Event) -> None:
    while not stop.is_set():
        memory["peak"] = max(memory["peak"], rss_mb(*pids))
        latency = tally.latency_ms["realtime"] + tally.latency_ms["legacy"]
        line = (
            f"[{time.monotonic() - started:5.0f}s] live={tally.live} held={tally.held} dropped={tally.dropped} "
            f"turns sent={tally.turns_sent} answered={tally.answered} lost={tally.lost} "
            f"fallbacks={sum(tally.fallbacks.values())} errors={sum(tally.errors.values())} "
            f"first-audio p95={percentiles(latency)['p95']} ms "
            f"relay-down p95={percentiles(tally.downstream_ms)['p95']} ms rss={memory['peak']:.0f} MB"
        )
        print(line, file=sys.stderr, flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)


async def drive(target: Fleet, keys: list[str], upstream_port: int, options) -> dict:
    lines = rendered_lines()
    tally = Tally()
    memory = {"before": rss_mb(*target.pids), "peak": 0.0, "cpu": cpu_seconds(*target.pids)}
    started = time.monotonic()
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(progress(tally, started, target.pids, memory, stop))
    deadline = started + options.duration
    kiosks = [kiosk_loop(target, keys[n], n, deadline, lines, tally, options) for n in range(options.sessions)]
    await asyncio.gather(*kiosks)
    stop.set()
    await watcher
    memory["cpu"] = cpu_seconds(*target.pids) - memory["cpu"]
    upstream = await asyncio.to_thread(upstream_stats, upstream_port)
    return summary(tally, options, memory, upstream, time.monotonic() - started)


def summary(tally: Tally, options, memory: dict, standin: dict, elapsed: float) -> dict:
    """The run's figures. Kiosk → upstream, the relay's added time counts the frames sent once the session's
    upstream socket was open; those the kiosk sent before (its microphone streams from `session.start`) waited for
    the session to open, and are reported apart as `session_opening_wait_ms`."""
    upstream = standin["upstream_ms"]
    downstream = percentiles(tally.downstream_ms)
    worst = {key: max(upstream[key], downstream[key]) for key in ("p50", "p95", "p99")}
    return {
        "sessions": options.sessions,
        "workers": options.workers or 1,
        "behind_nginx": bool(options.workers),
        "duration_s": round(elapsed, 1),
        "input": "text" if options.text else "audio",
        "brain": options.brain,
        "path": "legacy" if options.legacy else "realtime",
        "sessions_held": tally.held,
        "sessions_dropped": tally.dropped,
        "turns_sent": tally.turns_sent,
        "turns_answered": tally.answered,
        "turns_errored": tally.errored,
        "turns_lost": tally.lost,
        "first_audio_ms": {path: percentiles(samples) for path, samples in tally.latency_ms.items()},
        # Little's law: turns answered per second × the mean wait for their first audio = turns waiting at once.
        "turns_waiting_mean": round(sum(map(sum, tally.latency_ms.values())) / 1000 / elapsed, 2),
        "relay_added_ms": {**worst, "kiosk_to_upstream": upstream, "upstream_to_kiosk": downstream},
        "session_opening_wait_ms": standin["opening_ms"],
        "sessions_started": dict(tally.decisions),
        "fallbacks": dict(tally.fallbacks),
        "errors": dict(tally.errors),
        "server_rss_mb": {"before": round(memory["before"], 1), "peak": round(memory["peak"], 1)},
        "server_mb_per_session": round((memory["peak"] - memory["before"]) / options.sessions, 2),
        "server_cpu_percent": round(100 * memory["cpu"] / elapsed, 1),
        "server_gc": None,  # (one worker) its collections during the run: `collections`
    }


def create_kiosks(server: LiveServer, count: int) -> list[str]:
    """One kiosk (and key) per load session, as in a lobby: the per-kiosk limits apply to each as in production."""
    code = (
        "from core.history import audit_context, cli_actor\n"
        "from reception.models import Kiosk\n"
        "with audit_context(cli_actor(), 'load test'):\n"
        f"    for n in range({count}):\n"
        "        kiosk = Kiosk(name=f'load-{n}')\n"
        "        print(kiosk.set_new_key())\n"
        "        kiosk.save()\n"
    )
    return server.manage("shell", "-c", code).split()[-count:]


def run(options) -> dict:
    database = "postgres" if options.workers else options.database  # several workers share PostgreSQL and Redis
    with tempfile.TemporaryDirectory() as directory, throwaway_database(database, Path(directory)) as url:
        upstream_port = free_port()
        env = {
            "REALTIME_API_URL": f"ws://127.0.0.1:{upstream_port}/v1/realtime",
            **CONNECTION_LIMITS_LIFTED,
            **({"REDIS_URL": options.redis} if options.workers else {}),
            "METRICS_SCRAPE_TOKEN": SCRAPE_TOKEN,
        }
        server = LiveServer(url, Path(directory), env)
        server.prepare()
        keys = create_kiosks(server, options.sessions)
        if not options.legacy:
            server.manage("rollout", "--enable", "--percent", "100", "--reason", "load test")
        command = [sys.executable, "tests/support/load_upstream.py", "--port", str(upstream_port)]
        with server.log.open("ab") as log:
            upstream = subprocess.Popen(
                [*command, "--brain", options.brain], cwd=REPO, env=server.env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(upstream_port, 60, upstream, server.log)
            with serve_target(server, options, Path(directory)) as target:
                wait_until_settled(*target.pids)
                return with_collections(
                    server, options, lambda: uvloop.run(drive(target, keys, upstream_port, options))
                )
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)
            if options.server_log:
                Path(options.server_log).write_bytes(server.log.read_bytes())


@contextlib.contextmanager
def serve_target(server: LiveServer, options, directory: Path) -> Iterator[Fleet]:
    """One server process, or (`--workers N`) `make serve`'s N workers behind nginx with TLS."""
    if options.workers:
        with serving(server.env, options.workers, directory) as fleet:
            yield fleet
        return
    server.start()
    try:
        yield Fleet(server.url, [server.process.pid], None)
    finally:
        server.stop()


def report(result: dict) -> str:
    latency = result["first_audio_ms"]
    relay = result["relay_added_ms"]
    fmt = lambda p: f"p50={p['p50']} p95={p['p95']} p99={p['p99']} ms (n={p.get('count', '-')})"  # noqa: E731
    return "\n".join(
        [
            f"sessions={result['sessions']} workers={result['workers']}{' behind nginx' * result['behind_nginx']} "
            f"duration={result['duration_s']}s input={result['input']} "
            f"brain={result['brain']} path={result['path']}",
            f"sessions held={result['sessions_held']} dropped={result['sessions_dropped']}",
            f"turns sent={result['turns_sent']} answered={result['turns_answered']} "
            f"errored={result['turns_errored']} lost={result['turns_lost']}",
            f"end of speech -> first audio, realtime: {fmt(latency['realtime'])}",
            f"end of speech -> first audio, legacy:   {fmt(latency['legacy'])}",
            f"turns waiting for their first audio at once, on average: {result['turns_waiting_mean']}",
            f"server adds, kiosk -> upstream: {fmt(relay['kiosk_to_upstream'])}",
            f"server adds, upstream -> kiosk: {fmt(relay['upstream_to_kiosk'])}",
            f"frames sent before the session's upstream opened waited: {fmt(result['session_opening_wait_ms'])}",
            f"sessions started: {result['sessions_started']}",
            f"fallbacks by reason: {result['fallbacks'] or 'none'}",
            f"errors by kind: {result['errors'] or 'none'}",
            f"server RSS {result['server_rss_mb']['before']} -> {result['server_rss_mb']['peak']} MB: "
            f"{result['server_mb_per_session']} MB per session; server CPU {result['server_cpu_percent']}% of a core",
            f"server garbage collections during the run: {result['server_gc'] or 'not measured'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of new conversations")
    parser.add_argument("--text", action="store_true", help="visitors type their lines (the microphone streams)")
    parser.add_argument("--brain", choices=("scripted", "reception"), default="scripted", help="the stand-in's brain")
    parser.add_argument(
        "--legacy", action="store_true", help="Realtime off: every turn on the worker's local speech engines"
    )
    parser.add_argument("--think", type=float, default=2.0, help="mean seconds a visitor thinks before answering")
    parser.add_argument("--turn-timeout", type=float, default=30.0, help="seconds after which a turn is lost")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=0, help="N workers behind nginx (make serve), over PostgreSQL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="the workers' Redis (with --workers)")
    parser.add_argument("--json", help="also write the result as one JSON object to this path")
    parser.add_argument("--server-log", help="keep the server's and the stand-in's log at this path")
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SECRET_KEY", "load-test")  # the throwaway servers' own: none was set to run it
    mask_keys.install()  # the kiosks' frames masked as the server masks its own: one os.urandom per 1,024 frames
    result = run(options)
    print(report(result))
    if options.json:
        Path(options.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if result["turns_lost"] or result["sessions_dropped"] else 0


if __name__ == "__main__":
    sys.exit(main())
