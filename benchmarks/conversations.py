"""Benchmark: the spoken corpus (tests/support/corpus.py) through both voice paths with the real local engines.

Each conversation is spoken in real time (20 ms frames, the room's noise between lines) to the kiosk socket of the
ASGI application in this process, on a throw-away SQLite database with the demo directory; the routing policy sends
every session to the path being measured. Realtime talks to the bundled emulator (its reception brain on Whisper,
Silero and the local voices) on 127.0.0.1. Per path it prints: visits stored with the right fields, visitor turns
per visit, re-asks, and end of speech → first audio p50/p95. Exits 1 when a path gets fewer than 95 % right.

    python benchmarks/conversations.py [--path legacy|realtime|both] [--only ID ...] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers
_WORK = tempfile.TemporaryDirectory(prefix="conversations-")
os.environ["DATABASE_URL"] = f"sqlite:///{_WORK.name}/reception.db"
os.environ["WORKFLOW_CHECKPOINT_PATH"] = f"{_WORK.name}/checkpoints.db"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("SPEECH_WARM_UP", "false")  # warmed below, once the database is there
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)  # before the ASGI application's import starts its warm-up on this database

from channels.db import database_sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from benchmarks.legacy_turn import percentile  # noqa: E402
from metrics.collector import collector  # noqa: E402
from realtime.emulator import EmulatorConfig, EmulatorServer  # noqa: E402
from realtime.emulator.reception_brain import build_reception_brain  # noqa: E402
from reception.demo import create_demo_data  # noqa: E402
from reception.models import Kiosk  # noqa: E402
from speech.engines import legacy_engines  # noqa: E402
from tests.support.corpus import CORPUS, Conversation  # noqa: E402
from tests.support.spoken import close_voices, spoken  # noqa: E402
from tests.support.spoken_visits import Result, route_to, speak_conversation  # noqa: E402

TARGET = 0.95


def prepare(conversations: list[Conversation]) -> str:
    """Seed the demo directory, warm the engines, speak every line once; a new kiosk's key."""
    create_demo_data()
    kiosk = Kiosk(name="Corpus lobby", location="")
    key = kiosk.set_new_key()
    kiosk.save()
    setup_test_environment()  # hosts are notified by e-mail: kept in memory, never sent
    legacy_engines().warm_up()
    for conversation in conversations:
        for line in conversation.lines:
            spoken(line, conversation.language)
    close_voices()
    return key


def summary(path: str, results: list[Result]) -> dict:
    """One path's figures: right/total, wrong ones with what differs, turns, re-asks, first-audio percentiles."""
    latencies = [seconds for result in results for seconds in result.first_audio]
    right = sum(result.right for result in results)
    return {
        "path": path,
        "right": right,
        "total": len(results),
        "percent": round(100 * right / max(len(results), 1), 1),
        "turns_per_visit": round(statistics.mean(r.visitor_turns for r in results), 2) if results else 0,
        "reasks": sum(r.reasks for r in results),
        "first_audio_p50_ms": round(percentile(latencies, 0.5) * 1000) if latencies else None,
        "first_audio_p95_ms": round(percentile(latencies, 0.95) * 1000) if latencies else None,
        "wrong": [{"id": r.conversation.id, "differs": r.wrong, "heard": r.heard} for r in results if not r.right],
    }


def print_table(summaries: list[dict]) -> None:
    print(f"{'path':<10}{'right':>16}{'turns/visit':>13}{'re-asks':>9}{'first audio p50':>17}{'p95':>9}")
    for s in summaries:
        right = f"{s['right']}/{s['total']} ({s['percent']:.0f} %)"
        p50, p95 = s["first_audio_p50_ms"], s["first_audio_p95_ms"]
        print(f"{s['path']:<10}{right:>16}{s['turns_per_visit']:>13}{s['reasks']:>9}{p50:>14} ms{p95:>6} ms")
    for s in summaries:
        for wrong in s["wrong"]:
            print(f"  {s['path']} {wrong['id']}: {'; '.join(wrong['differs'])}")
            print(f"      heard: {' / '.join(wrong['heard'])}")


def progress(result: Result) -> str:
    """One line per conversation as the run goes; what was heard and answered when it went wrong."""
    line = f"{result.path} {result.conversation.id}: "
    if result.right:
        return line + "ok"
    exchange = "\n".join(f"      {role}: {text}" for role, text in result.exchange)
    return line + "WRONG " + "; ".join(result.wrong) + "\n" + exchange


async def run(paths: list[str], conversations: list[Conversation]) -> list[dict]:
    key = await database_sync_to_async(prepare)(conversations)
    emulator = EmulatorServer(build_reception_brain(), config=EmulatorConfig(accepted_keys=None))
    await emulator.start()
    settings.REALTIME_API_URL = emulator.url
    summaries = []
    try:
        for path in paths:
            await database_sync_to_async(route_to)(path)
            results = []
            for conversation in conversations:
                results.append(await speak_conversation(key, conversation, path))
                print(progress(results[-1]), file=sys.stderr, flush=True)
            summaries.append(summary(path, results))
    finally:
        await emulator.stop()
        collector.stop()
    return summaries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=["legacy", "realtime", "both"], default="both")
    parser.add_argument("--only", nargs="*", metavar="ID", help="conversation ids (default: the whole corpus)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    conversations = [c for c in CORPUS if not args.only or c.id in args.only]
    if not conversations:
        parser.error(f"no conversation with these ids; known: {', '.join(c.id for c in CORPUS)}")
    paths = ["legacy", "realtime"] if args.path == "both" else [args.path]
    summaries = asyncio.run(run(paths, conversations))
    if args.json:
        print(json.dumps(summaries, ensure_ascii=False, indent=2))
    else:
        print(f"{len(conversations)} spoken conversations per path")
        print_table(summaries)
    return 0 if all(s["percent"] >= TARGET * 100 for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
