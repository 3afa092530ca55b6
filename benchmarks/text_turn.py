"""Benchmark: `input_text` → `response.done` through the kiosk socket, many kiosks talking at once.

Starts a real server process on 127.0.0.1 over a fresh SQLite (or PostgreSQL) database and the
rule-based language understanding, then runs N kiosks concurrently through whole conversations,
each visitor pausing `--think` seconds (± 50 %) before answering; `--think 0` saturates the server.
Baseline in the same run: the round trip of a frame the server rejects without touching the
workflow (protocol + socket cost only). Prints p50/p95 of both and their ratio.

    python benchmarks/text_turn.py [--kiosks 20] [--rounds 3] [--database sqlite|postgres] [--staff 500]

`--staff N` adds N synthetic people to the demo directory (a larger company): every host lookup and
every utterance's host gazetteer then runs over N + 5 names.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers
from tests.support.live_server import LiveServer, throwaway_database

CONVERSATIONS = {
    "ja": ["株式会社テストの山田太郎です。", "鈴木さんと10時にお約束があります。", "はい"],
    "en": ["Hi, I'm John Smith from Acme Corp.", "I'm here to see Mr. Tanaka about the contract.", "Yes"],
}


# Surnames and given names that none of the demo's hosts (田中, 鈴木, 佐藤) resembles, so the scripted
# conversations take the same path whatever the directory size.
SURNAMES = [
    ("高橋", "たかはし", "Takahashi"), ("伊藤", "いとう", "Ito"), ("渡辺", "わたなべ", "Watanabe"),
    ("山本", "やまもと", "Yamamoto"), ("中村", "なかむら", "Nakamura"), ("小林", "こばやし", "Kobayashi"),
    ("加藤", "かとう", "Kato"), ("吉田", "よしだ", "Yoshida"), ("山口", "やまぐち", "Yamaguchi"),
    ("松本", "まつもと", "Matsumoto"), ("井上", "いのうえ", "Inoue"), ("木村", "きむら", "Kimura"),
    ("林", "はやし", "Hayashi"), ("清水", "しみず", "Shimizu"), ("森", "もり", "Mori"),
    ("池田", "いけだ", "Ikeda"), ("橋本", "はしもと", "Hashimoto"), ("石川", "いしかわ", "Ishikawa"),
    ("前田", "まえだ", "Maeda"), ("藤田", "ふじた", "Fujita"), ("岡田", "おかだ", "Okada"),
    ("後藤", "ごとう", "Goto"), ("長谷川", "はせがわ", "Hasegawa"), ("村上", "むらかみ", "Murakami"),
    ("近藤", "こんどう", "Kondo"),
]  # fmt: skip
GIVEN_NAMES = [
    ("誠", "まこと", "Makoto"), ("翔", "しょう", "Sho"), ("陽子", "ようこ", "Yoko"), ("大輔", "だいすけ", "Daisuke"),
    ("直樹", "なおき", "Naoki"), ("恵", "めぐみ", "Megumi"), ("拓也", "たくや", "Takuya"), ("愛", "あい", "Ai"),
    ("亮", "りょう", "Ryo"), ("由美", "ゆみ", "Yumi"), ("学", "まなぶ", "Manabu"), ("綾", "あや", "Aya"),
    ("修", "おさむ", "Osamu"), ("舞", "まい", "Mai"), ("剛", "つよし", "Tsuyoshi"), ("香織", "かおり", "Kaori"),
    ("浩", "ひろし", "Hiroshi"), ("真理", "まり", "Mari"), ("隆", "たかし", "Takashi"), ("彩", "あや", "Aya"),
]  # fmt: skip


def write_directory(path: Path, size: int) -> Path:
    """A staff CSV (the import_staff format) of `size` distinct synthetic people."""
    people = itertools.islice(itertools.product(SURNAMES, GIVEN_NAMES), size)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "reading", "romaji", "department", "email"])
        for number, ((sur, sur_kana, sur_romaji), (given, given_kana, given_romaji)) in enumerate(people):
            writer.writerow(
                [f"{sur} {given}", f"{sur_kana} {given_kana}", f"{given_romaji} {sur_romaji}", f"第{number}課", ""]
            )
    return path


async def until_done(ws) -> None:
    while True:
        message = json.loads(await ws.recv())
        if message["type"] in ("response.done", "error"):
            return


async def kiosk(
    server: LiveServer, key: str, index: int, rounds: int, turns: list[float], baseline: list[float], think: float
):
    language = "ja" if index % 2 == 0 else "en"
    async with websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        for round_number in range(rounds):
            await ws.send(
                json.dumps(
                    {"type": "session.start", "session_id": f"bench-{index}-{round_number}", "language": language}
                )
            )
            await until_done(ws)
            for text in CONVERSATIONS[language]:
                await asyncio.sleep(think * random.uniform(0.5, 1.5))  # the visitor reads, then answers
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "input_text", "text": text}, ensure_ascii=False))
                await until_done(ws)
                turns.append(time.perf_counter() - started)
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "no.such.type"}))
                await until_done(ws)
                baseline.append(time.perf_counter() - started)
            await ws.send(json.dumps({"type": "session.end"}))
            await ws.recv()
            await ws.wait_closed()
            ws = await websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {key}"})
        await ws.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="conversations per kiosk")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--staff", type=int, default=0, help="synthetic people added to the demo directory")
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean seconds a visitor takes between turns (0: saturate the server)"
    )
    args = parser.parse_args()
    if not 0 <= args.staff <= len(SURNAMES) * len(GIVEN_NAMES):
        parser.error(f"--staff: from 0 to {len(SURNAMES) * len(GIVEN_NAMES)}")
    with tempfile.TemporaryDirectory() as directory, throwaway_database(args.database, Path(directory)) as url:
        # The text path alone: the speech models do not load in the background meanwhile.
        server = LiveServer(url, Path(directory), {"SPEECH_WARM_UP": "false"})
        keys = [server.prepare()] + [server.create_kiosk() for _ in range(args.kiosks - 1)]
        if args.staff:
            server.manage("import_staff", str(write_directory(Path(directory) / "staff.csv", args.staff)))
        server.start()
        try:
            turns: list[float] = []
            baseline: list[float] = []
            # One conversation per kiosk first, not counted: the steady state is what visitors meet.
            await asyncio.gather(*(kiosk(server, keys[i], 1000 + i, 1, [], [], 0) for i in range(args.kiosks)))
            started = time.perf_counter()
            await asyncio.gather(
                *(kiosk(server, keys[i], i, args.rounds, turns, baseline, args.think) for i in range(args.kiosks))
            )
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
        # Every scripted conversation must have reached its host, or the figures timed some other path.
        outcomes = Counter(visit["status"] for visit in json.loads(server.manage("export_visits", "--format", "json")))
    ms = 1000
    print(
        f"kiosks={args.kiosks} rounds={args.rounds} think={args.think}s database={args.database} staff=+{args.staff} "
        f"turns={len(turns)} wall={elapsed:.1f}s"
    )
    print(
        f"text turn   p50={percentile(turns, 0.5) * ms:6.1f} ms  p95={percentile(turns, 0.95) * ms:6.1f} ms  "
        f"max={max(turns) * ms:6.1f} ms  mean={statistics.fmean(turns) * ms:6.1f} ms"
    )
    base50, base95 = percentile(baseline, 0.5), percentile(baseline, 0.95)
    print(f"baseline    p50={base50 * ms:6.1f} ms  p95={base95 * ms:6.1f} ms  (rejected frame round trip)")
    print(f"visits by outcome: {dict(outcomes)}")
    print(f"ratio p50={percentile(turns, 0.5) / base50:.1f}x  p95={percentile(turns, 0.95) / base95:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
