"""Benchmark: what one server process adds to real-time kiosk audio, against a minimal raw relay, and how many
sessions it holds.

Three processes besides this one: the upstream stand-in (`tests/support/load_upstream.py`), one uvicorn worker of the
project (Realtime on for every session), and a raw relay (`benchmarks/raw_relay.py`: a bare `websockets` server
that turns kiosk frames into `input_audio_buffer.append` and reply deltas back into binary frames, nothing else).
Kiosks stream stamped 20 ms PCM16 frames at real-time pace and speak a line every few seconds, which the stand-in
answers with audio; the time added per frame is measured kiosk → stand-in (at the stand-in) and stand-in → kiosk
(at the kiosk), same clock.

* compare: the same sessions through each relay in turn: time added p50/p95/p99 per direction, and messages per
  second per core (frames relayed over the relay's CPU seconds), as ratios ours/raw: over the whole phase, and
  (`streaming`) over the window in which every kiosk streams, without the sessions opening and closing, whose
  workflow and database work only our server has; `--repeat N` runs N such rounds and gives each round's ratios
  and their median, since a noisy moment of a shared machine skews one round;
* capacity: step the sessions up through our server until the added time's p95 passes `--budget-ms` (20); with
  `--raw-capacity` the raw relay first, as the most this machine can measure (the kiosks and the stand-in share its
  cores). Each step also gives where the cores went (the relay and its kernel time and wake-ups, the server side
  behind nginx, the kiosks, the stand-in, Redis and PostgreSQL, the whole machine), and the sessions that were on
  Legacy (by reason): a step with any is not held, since the relay did not carry them. The hour's cost limit is
  raised for the run, so every session is admitted to Realtime.

`--silent`: the kiosks stream silence, so no turn is taken: what the relay costs for its frames alone, apart from
what the conversation's turns (the replies, the workflow, the accounting) cost.

`--profile [RAW_STACKS]`: py-spy samples the server during the largest step that held (else the first), once its
sessions have opened and every kiosk streams, and the busy event loop's top costs are printed, inclusive and self
(the raw stacks kept at RAW_STACKS if given).

`--workers 1,2,4`: instead, `make serve`'s fleets behind nginx over PostgreSQL and Redis, all running, stepped up
side by side (each count of sessions on each fleet in turn), `--repeat` rounds of them; each round gives the
sessions each fleet held over what one worker held, and the median.

    python benchmarks/relay_capacity.py [--sessions 10] [--seconds 20] [--steps 10,20,40,60,80,100] [--repeat 1]
        [--silent] [--redis URL] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import uvloop
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.py_spy import profile, top_costs
from realtime import mask_keys
from tests.load_test_realtime import create_kiosks, upstream_stats, wait_until_settled
from tests.support.live_server import (
    CONNECTION_LIMITS_LIFTED,
    REPO,
    LiveServer,
    free_port,
    throwaway_database,
    wait_for_port,
)
from tests.support.load_upstream import FRAME_BYTES, percentiles, stamp, stamp_age_ms
from tests.support.processes import (
    cpu_by_process,
    cpu_seconds,
    cpu_used_between,
    group_pids,
    machine_busy_seconds,
    named_pids,
    process_tree,
    system_cpu_seconds,
    wakeups,
)
from tests.support.serve_fleet import Fleet, serving

SILENCE = bytes(FRAME_BYTES)
SPEECH = [(b"\x00\x20\x00\xe0" * (FRAME_BYTES // 4)) for _ in range(40)]  # 0.8 s of a loud square wave
LINE_EVERY = 4.0  # seconds between the kiosk's lines
RAW_RELAY = Path(__file__).with_name("raw_relay.py")


@dataclass(frozen=True)
class Standin:
    """The upstream stand-in's process: its port and pid."""

    port: int
    pid: int


# --- kiosks -------------------------------------------------------------------------------------------------------


class Kiosks:
    """N kiosks on one relay: stamped frames at real-time pace, once every session has started.

    The kiosks open their sessions within a second; each then waits until all of them have `session.started`, one
    second more for the greetings and its own offset into a line, before it streams: the steps measure sessions
    held, not a burst of sessions opening (`tests/load_test_realtime.py` opens sessions all the time, and its
    report keeps the frames that waited for a session to open apart).
    """

    def __init__(self, target: Fleet, keys: list[str], seconds: float, standin: int, silent: bool = False) -> None:
        self.target, self.keys, self.seconds, self.standin = target, keys, seconds, standin
        self.lines = [SILENCE] * len(SPEECH) if silent else SPEECH  # silent: no turns, the relay's frames alone
        self.downstream_ms: list[float] = []
        self.sent = 0
        self.errors: Counter = Counter()
        self.on_legacy: Counter = Counter()  # sessions not relayed: started on Legacy, or moved there (by reason)
        self.waiting = len(keys)  # sessions not started yet (nor failed)
        self.all_started = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self.kiosk(key, n) for n, key in enumerate(self.keys)))

    def settled(self) -> None:
        """One more session started or failed: the last one lets the streams begin."""
        self.waiting -= 1
        if not self.waiting:
            self.all_started.set()

    async def kiosk(self, key: str, number: int) -> None:
        await asyncio.sleep(number * 0.02 % 1.0)
        started, counted = asyncio.Event(), False
        try:
            async with websockets.connect(
                self.target.url,
                additional_headers={"Authorization": f"Bearer {key}"},
                max_size=None,
                compression=None,
                ssl=self.target.ssl,
            ) as ws:
                await ws.send(json.dumps({"type": "session.start", "session_id": f"bench-{number}-{time.time_ns()}"}))
                reader = asyncio.ensure_future(self.read(ws, started))
                await asyncio.wait_for(started.wait(), 60)
                self.settled()
                counted = True
                await asyncio.wait_for(self.all_started.wait(), 60)
                # The greetings, then each kiosk at its own moment of a line and of a frame, as kiosks are in a lobby
                # (all at once, every frame and every reply would come in one burst).
                await asyncio.sleep(1.0 + number * 0.7071 % LINE_EVERY)
                await self.stream(ws)
                reader.cancel()
        except (OSError, TimeoutError, websockets.WebSocketException) as error:
            self.errors[type(error).__name__] += 1
        finally:
            if not counted:
                self.settled()

    async def read(self, ws, started: asyncio.Event) -> None:
        async for frame in ws:
            if isinstance(frame, bytes) and len(frame) >= 12:
                self.downstream_ms.append(stamp_age_ms(frame))
            elif isinstance(frame, str):
                message = json.loads(frame)
                if message["type"] == "session.started":
                    started.set()
                    if message.get("mode") != "realtime":
                        self.on_legacy[f"started: {message.get('reason')}"] += 1
                elif message["type"] == "mode.changed":
                    self.on_legacy[message.get("reason", "unknown")] += 1
                elif message["type"] == "error":
                    self.errors[message["code"]] += 1

    def readings(self) -> dict:
        return readings(self.target, self.standin, self.sent + len(self.downstream_ms))

    async def streaming_window(self, on_streaming=None) -> dict:
        """`readings` at both ends of the window in which every kiosk streams: from the last one's start (1 +
        LINE_EVERY after every session started, at most) to the first one's end (1 + seconds after), less a margin;
        `on_streaming()` is called as it opens. Empty when the phase is too short for one."""
        await self.all_started.wait()
        await asyncio.sleep(1.0 + LINE_EVERY)  # the greetings, and every kiosk's offset into its line
        if on_streaming is not None:
            on_streaming()
        if self.seconds - LINE_EVERY - 0.5 < 1.0:
            return {}
        before = self.readings()
        await asyncio.sleep(self.seconds - LINE_EVERY - 0.5)
        return used_between(before, self.readings())

    async def stream(self, ws) -> None:
        start = tick = time.monotonic()
        while tick - start < self.seconds:
            phase = (tick - start) % LINE_EVERY
            frame = self.lines[int(phase / 0.02)] if phase < 0.8 else SILENCE
            await ws.send(stamp(frame))
            self.sent += 1
            tick = max(tick + 0.02, time.monotonic() - 0.2)
            await asyncio.sleep(max(0.0, tick - time.monotonic()))


def readings(target: Fleet, standin: int, messages: int) -> dict:
    """The CPU counters of every process of a run, read together; `used_between` two readings gives a phase's or a
    window's use."""
    return {
        "at": time.monotonic(),
        "relay": cpu_seconds(*target.pids),  # the relay's process, or the workers with their bookkeeping helpers
        "relay_system": system_cpu_seconds(*target.pids),
        "relay_wakeups": wakeups(*target.pids),  # the event loops' waits for their sockets
        # Behind nginx: the supervisor's whole process group as it stands (the workers and their helpers, nginx, the
        # task consumer), each without the processes it started, which are in the group already; else the relay's.
        "server_side": cpu_by_process(*(group_pids(target.group) if target.group else process_tree(*target.pids))),
        "kiosks": cpu_seconds(os.getpid(), tree=False),  # this process, whose children are the servers
        "standin": cpu_seconds(standin),
        "databases": cpu_by_process(*named_pids("redis-server", "postgres")),
        "machine": machine_busy_seconds(),  # every process on the machine, the kernel and the hypervisor's steal
        "messages": messages,
    }


def used_between(before: dict, after: dict) -> dict:
    return {
        key: cpu_used_between(before[key], value) if isinstance(value, dict) else value - before[key]
        for key, value in after.items()
    }


def percents(used: dict) -> dict:
    """A phase's or a window's use as percents of one core over its length, and the relay's messages per CPU-second
    and per wake-up."""
    figures = {f"{key}_cpu_percent": round(100 * used[key] / used["at"], 1) for key in CPU_KEYS}
    figures["messages_per_cpu_second"] = round(used["messages"] / max(used["relay"], 1e-3))
    figures["messages_per_wakeup"] = round(used["messages"] / max(used["relay_wakeups"], 1), 2)
    return figures


CPU_KEYS = ("relay", "relay_system", "server_side", "kiosks", "standin", "databases", "machine")


async def phase(target: Fleet, keys: list[str], options, standin: Standin, on_streaming=None) -> dict:
    """One run of the kiosks through one relay at real-time pace for `options.seconds` (in silence with
    `options.silent`); the stand-in's counts are reset first. `on_streaming()` is called once every session has
    started and the kiosks stream."""
    await asyncio.sleep(2)  # what the previous phase left in flight arrives first
    await asyncio.to_thread(upstream_stats, standin.port, True)
    kiosks = Kiosks(target, keys, options.seconds, standin.pid, options.silent)
    before = kiosks.readings()
    watch = asyncio.ensure_future(kiosks.streaming_window(on_streaming))
    await kiosks.run()
    window = watch.result() if watch.done() else {}  # not done: the sessions never all started
    watch.cancel()
    used = used_between(before, kiosks.readings())
    stats = await asyncio.to_thread(upstream_stats, standin.port)
    upstream, down = stats["upstream_ms"], percentiles(kiosks.downstream_ms)
    return {
        "sessions": len(keys),
        "kiosk_to_upstream_ms": upstream,
        "upstream_to_kiosk_ms": down,
        "added_p95_ms": max(upstream["p95"], down["p95"]),
        # Frames sent before the session's upstream socket opened: none, when every session opens (see `Kiosks`).
        "session_opening_wait_ms": stats["opening_ms"],
        "frames_sent": kiosks.sent,
        "frames_relayed_per_second": round(upstream["count"] / used["at"], 1),
        # The whole phase: the sessions opening (our server's workflow and database work; the raw relay has none),
        # the streams, the sessions closing. `machine` is of all the cores (200 % on two).
        **percents({**used, "messages": upstream["count"] + down["count"]}),
        # While every kiosk streams, sessions held and none opening or closing (None: too short a phase); its messages
        # are the frames the kiosks sent and got.
        "streaming": {"seconds": round(window["at"], 1), **percents(window)} if window else None,
        "errors": dict(kiosks.errors),
        # A session on Legacy relays nothing (its frames go to the local VAD): a step with any is not held.
        "sessions_on_legacy": dict(kiosks.on_legacy),
    }


# --- the run ------------------------------------------------------------------------------------------------------


def ratios(round_: dict) -> dict:
    """One round's figures of ours over the raw relay's."""
    ours, raw = round_["ours"], round_["raw"]
    ratio = lambda a, b: round(a / b, 2) if b else None  # noqa: E731
    streaming = ours["streaming"] and raw["streaming"]
    return {
        "added_p50_kiosk_to_upstream": ratio(ours["kiosk_to_upstream_ms"]["p50"], raw["kiosk_to_upstream_ms"]["p50"]),
        "added_p95_kiosk_to_upstream": ratio(ours["kiosk_to_upstream_ms"]["p95"], raw["kiosk_to_upstream_ms"]["p95"]),
        "added_p95_worst_direction": ratio(ours["added_p95_ms"], raw["added_p95_ms"]),
        "messages_per_cpu_second": ratio(ours["messages_per_cpu_second"], raw["messages_per_cpu_second"]),
        # Without the sessions opening and closing, which cost our server its workflow's and database's work.
        "messages_per_cpu_second_streaming": ratio(
            ours["streaming"]["messages_per_cpu_second"], raw["streaming"]["messages_per_cpu_second"]
        )
        if streaming
        else None,
    }


async def compare(targets: dict[str, Fleet], keys: list[str], options, standin: Standin) -> dict:
    """`options.repeat` rounds of the same sessions through the raw relay, then ours: a noisy moment of a shared
    machine skews one round's ratio, not their median."""
    rounds = []
    for number in range(1, options.repeat + 1):
        round_ = {name: await phase(targets[name], keys, options, standin) for name in ("raw", "ours")}
        round_["ratios_ours_over_raw"] = ratios(round_)
        rounds.append(round_)
        print(
            f"  round {number}: added p95 raw {round_['raw']['added_p95_ms']} ms, ours {round_['ours']['added_p95_ms']}"
            f" ms ({round_['ratios_ours_over_raw']['added_p95_worst_direction']}x)",
            flush=True,
        )
    medians = {}
    for key in rounds[0]["ratios_ours_over_raw"]:
        values = [round_["ratios_ours_over_raw"][key] for round_ in rounds]
        medians[key] = round(statistics.median(values), 2) if None not in values else None
    return {"rounds": rounds, "median_ratios_ours_over_raw": medians}


async def step_up(targets: dict[str, Fleet], keys: list[str], options, standin: Standin) -> dict:
    """Step the sessions up through each relay until its added time's p95 passes the budget (or errors come). Each
    count of sessions runs on every relay still within the budget, one after the other in alternating order, so
    a drift of a shared machine's speed over the minutes of a run falls on all of them alike."""
    results = {name: {"steps": [], "most_sessions_within_budget": None} for name in targets}
    going = list(targets)
    for index, count in enumerate(options.steps):
        for name in going if index % 2 == 0 else going[::-1]:
            step = await phase(targets[name], keys[:count], options, standin)
            results[name]["steps"].append(step)
            window = step["streaming"] or step  # the whole phase when it was too short for a window
            print(
                f"  {name}: {count} sessions: added p95 {step['added_p95_ms']} ms; CPU % while every kiosk streams:"
                f" relay {window['relay_cpu_percent']} (system {window['relay_system_cpu_percent']},"
                f" {window['messages_per_wakeup']} messages per wake-up), server side"
                f" {window['server_side_cpu_percent']}, kiosks {window['kiosks_cpu_percent']}, stand-in"
                f" {window['standin_cpu_percent']}, databases {window['databases_cpu_percent']}, machine"
                f" {window['machine_cpu_percent']} of {100 * os.cpu_count()};"
                f" {step['session_opening_wait_ms']['count']} frames sent before a session opened; on Legacy"
                f" {step['sessions_on_legacy'] or 'none'}",
                flush=True,
            )
            if step["added_p95_ms"] <= options.budget_ms and not step["errors"] and not step["sessions_on_legacy"]:
                results[name]["most_sessions_within_budget"] = count
        going = [name for name in going if results[name]["most_sessions_within_budget"] == count]
        if not going:
            break
    return results


async def capacities(targets: dict[str, Fleet], keys: list[str], options, standin: Standin, scratch: Path) -> dict:
    """The capacity of our relay and, as the machine's ceiling in the same run, of the raw one (`--raw-capacity`):
    the kiosks and the stand-in share the cores with the relay, so the raw relay's capacity is what this machine
    can measure at most."""
    result = {}
    for name in ("raw", "ours") if options.raw_capacity else ("ours",):
        print(f"capacity of the {name} relay:", flush=True)
        result.update(await step_up({name: targets[name]}, keys, options, standin))
    ours, held = targets["ours"], result["ours"]["most_sessions_within_budget"]
    if options.profile:
        stacks = Path(options.profile) if isinstance(options.profile, str) else scratch / "profile.txt"
        spies = []  # py-spy starts once the sessions have opened: it samples sessions held, as the steps measure

        def start_profile() -> None:
            spies.append(profile(ours.pids[0], max(1.0, options.seconds - LINE_EVERY - 1.0), stacks))

        await phase(ours, keys[: held or options.steps[0]], options, standin, start_profile)
        for spy in spies:  # none when the phase ended before its kiosks streamed
            spy.wait(timeout=60)
        result["profile_busy_loop_percent"] = top_costs(stacks) if spies else None
    return result


def start_processes(options, scratch: Path, database_url: str):
    """The database with its kiosks, the upstream stand-in and (one worker alone) our worker and the raw relay."""
    upstream_port, raw_port = free_port(), free_port()
    env = {
        "REALTIME_API_URL": f"ws://127.0.0.1:{upstream_port}/v1/realtime",
        **CONNECTION_LIMITS_LIFTED,
        # Every session holds an estimate of its cost against the hour's limit: at 100 sessions and more the default
        # limit sent some to Legacy ("cost_limit"), whose local VAD then shared the worker with the relay.
        "REALTIME_COST_LIMIT_PER_HOUR": "100000",
        **({"REDIS_URL": options.redis} if options.redis else {}),
    }
    server = LiveServer(database_url, scratch, env)
    server.prepare()
    keys = create_kiosks(server, max([options.sessions, *options.steps]))
    server.manage("rollout", "--enable", "--percent", "100", "--reason", "benchmark")
    started = []
    with server.log.open("ab") as log:
        commands = [[sys.executable, "tests/support/load_upstream.py", "--port", str(upstream_port)]]
        if not options.workers:
            commands.append([sys.executable, str(RAW_RELAY), str(raw_port), env["REALTIME_API_URL"] + "?model=m"])
        for command in commands:
            started.append(subprocess.Popen(command, cwd=REPO, env=server.env, stdout=log, stderr=subprocess.STDOUT))
    wait_for_port(upstream_port, 60, started[0], server.log)
    standin, raw = Standin(upstream_port, started[0].pid), None
    if not options.workers:
        wait_for_port(raw_port, 30, started[1], server.log)
        raw = Fleet(f"ws://127.0.0.1:{raw_port}/", [started[1].pid], None)
        server.start()
        wait_until_settled(server.process.pid)
    return server, started, keys, standin, raw


def fleets(server: LiveServer, keys: list[str], options, standin: Standin, scratch: Path) -> dict:
    """`make serve` with each of `--workers`' counts of workers behind nginx (TLS), all running (an idle worker's loop
    took 0.4 % of a core while another fleet streamed), stepped up side by side in `--repeat` rounds; each round's
    sessions held over one worker's, and their median (a noisy moment moves one step's p95 by more than a step)."""
    rounds = []
    for number in range(1, options.repeat + 1):
        with contextlib.ExitStack() as stack:
            started = {}
            for count in options.workers:
                directory = scratch / f"fleet-{count}-{number}"
                directory.mkdir()
                started[str(count)] = stack.enter_context(serving(server.env, count, directory))
            for fleet in started.values():
                wait_until_settled(*fleet.pids)
            print(f"round {number}: fleets of {', '.join(started)} worker(s) behind nginx, side by side:", flush=True)
            result = uvloop.run(step_up(started, keys, options, standin))
        held = {count: fleet["most_sessions_within_budget"] for count, fleet in result.items()}
        if held.get("1"):  # 0 for a fleet that held not even the first step; "or more" for one that held the last
            result["sessions_over_one_worker"] = {count: round((n or 0) / held["1"], 2) for count, n in held.items()}
            print(f"round {number}: sessions held {held}, over one worker {result['sessions_over_one_worker']}")
        rounds.append(result)
    over_one = [round_["sessions_over_one_worker"] for round_ in rounds if "sessions_over_one_worker" in round_]
    # None when one worker held not even the first step in any round: nothing to divide by
    medians = (
        {str(count): statistics.median(r[str(count)] for r in over_one) for count in options.workers}
        if over_one
        else None
    )
    return {"rounds": rounds, "median_sessions_over_one_worker": medians}


def run(options) -> dict:
    database = "postgres" if options.workers else "sqlite"  # several workers share PostgreSQL and Redis
    with tempfile.TemporaryDirectory() as directory, throwaway_database(database, Path(directory)) as url:
        scratch = Path(directory)
        server, started, keys, standin, raw = start_processes(options, scratch, url)
        try:
            if options.workers:
                return {"fleets": fleets(server, keys, options, standin, scratch)}
            targets = {"ours": Fleet(server.url, [server.process.pid], None), "raw": raw}
            result = {"compare": uvloop.run(compare(targets, keys[: options.sessions], options, standin))}
            if options.steps:
                result["capacity"] = uvloop.run(capacities(targets, keys, options, standin, scratch))
            return result
        finally:
            server.stop()
            for process in started:
                process.terminate()
                process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="sessions of the comparison")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of each phase and step")
    parser.add_argument("--steps", default="10,20,40,60,80,100", help="session counts of the capacity run ('': none)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the comparison, or of the fleets with --workers (their median is given)",
    )
    parser.add_argument(
        "--silent", action="store_true", help="the kiosks stream silence: no turns, the relay's frames alone"
    )
    parser.add_argument("--budget-ms", type=float, default=20.0, help="the added time's p95 a step must stay under")
    parser.add_argument(
        "--profile",
        nargs="?",
        const=True,
        metavar="RAW_STACKS",
        help="py-spy the server during the largest step held (and keep its raw stacks at RAW_STACKS)",
    )
    parser.add_argument(
        "--raw-capacity", action="store_true", help="step the raw relay up too: the most this machine can measure"
    )
    parser.add_argument("--redis", help="a Redis URL: the worker shares its state there, as one of several does")
    parser.add_argument(
        "--workers",
        help="worker counts, e.g. 1,2: each `make serve` fleet behind nginx (TLS) over PostgreSQL and Redis is "
        "stepped up in turn, instead of the comparison and one worker alone",
    )
    parser.add_argument("--json", help="also write the result to this path")
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")
    mask_keys.install()  # the kiosks' frames masked as the server masks its own: one os.urandom per 1,024 frames
    options.steps = [int(count) for count in options.steps.split(",") if count]
    options.workers = [int(count) for count in (options.workers or "").split(",") if count]
    if options.workers:
        options.redis = options.redis or "redis://127.0.0.1:6379/9"
    result = run(options)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if options.json:
        Path(options.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
