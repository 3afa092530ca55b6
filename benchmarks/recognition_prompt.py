"""Benchmark: how well Whisper hears the spoken corpus's Japanese lines with the product's recognition prompt,
against the alternatives tried, in the same run (no assertions).

Every Japanese line of the corpus (each part of a line said with a pause on its own), spoken by Open JTalk at its
speed over its room noise (`tests/support/spoken.py`), with 0.5 s of the room before and 0.3 s after, goes to the
Legacy Whisper (base, int8) with:
* `prompt`: the product's (`recognition_hint("ja")`: the demo directory's staff, today's visitors and companies, the
  carriers and a delivery's words), beam 1, as the kiosk runs it;
* `no carriers`: the same prompt without the carriers and the delivery's words;
* `beam 5`: the product's prompt at beam 5.
Per variant: the character error rate of the readings (hiragana, so that 「ヤマだったろう」 for 山田太郎 costs what it
sounds like, as the workflow's reconciliation reads it), lines heard exactly, and the median recognition time.

    python benchmarks/recognition_prompt.py [--show]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")  # for its throwaway database and servers
_WORK = tempfile.TemporaryDirectory(prefix="recognition-")
os.environ["DATABASE_URL"] = f"sqlite:///{_WORK.name}/reception.db"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from reception.demo import create_demo_data  # noqa: E402
from reception.workflow.names import JA_CARRIERS, reading_of, recognition_hint  # noqa: E402
from speech.audio import KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE, resample_pcm16  # noqa: E402
from speech.stt import WhisperSTT  # noqa: E402
from tests.support.corpus import CORPUS, Line  # noqa: E402
from tests.support.spoken import Microphone, close_voices, spoken  # noqa: E402

_PUNCTUATION = re.compile(r"[\s、。,.!?！？]")
DELIVERY_WORDS = ("宅配便", "受領印", "サイン")


def lines() -> list[Line]:
    """The corpus's Japanese lines, a pause's parts apart, each once per speed and noise."""
    said = (
        Line(part.strip(), line.speed, line.noise)
        for conversation in CORPUS
        if conversation.language == "ja"
        for line in conversation.lines
        for part in line.text.split("|")
    )
    return list(dict.fromkeys(line for line in said if len(_PUNCTUATION.sub("", line.text)) >= 4))


def heard_by_the_kiosk(line: Line) -> bytes:
    """The line as the kiosk's microphone gives it, at 16 kHz: the room, the speech in its noise, the room."""
    microphone, speech = Microphone(), spoken(line, "ja")
    microphone.hear(line, speech)
    room = b"".join(microphone.quiet() for _ in range(25))
    audio = room + b"".join(microphone.frames(speech)) + room[: len(room) * 3 // 5]
    return resample_pcm16(audio, KIOSK_SAMPLE_RATE, RECOGNITION_SAMPLE_RATE)


def reading_error(said: str, heard: str) -> float:
    """Levenshtein distance between the two readings over the length of what was said."""
    a, b = (_PUNCTUATION.sub("", reading_of(unicodedata.normalize("NFKC", t))) for t in (said, heard))
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1] / max(len(a), 1)


def without_carriers(prompt: str) -> str:
    """The prompt without the carriers and the delivery's words (each listed after a 「、」)."""
    stripped = prompt
    for word in (*JA_CARRIERS, *DELIVERY_WORDS):
        stripped = stripped.replace(f"、{word}", "")
    if stripped == prompt:  # the prompt is written otherwise now: the comparison would compare it with itself
        raise SystemExit(f"no carrier found to leave out of the prompt: {prompt}")
    return stripped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print what each variant heard, line by line")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    create_demo_data()
    prompt = recognition_hint("ja")
    greedy, beam = WhisperSTT(beam_size=1), WhisperSTT(beam_size=5)
    variants = {"prompt": (greedy, prompt), "no carriers": (greedy, without_carriers(prompt)), "beam 5": (beam, prompt)}
    figures: dict[str, dict[str, list[float]]] = {name: {"error": [], "seconds": []} for name in variants}
    said_lines = lines()
    for line in said_lines:
        audio = heard_by_the_kiosk(line)
        for name, (engine, hint) in variants.items():
            started = time.perf_counter()
            heard = engine.transcribe(audio, "ja", hint).text
            figures[name]["seconds"].append(time.perf_counter() - started)
            figures[name]["error"].append(reading_error(line.text, heard))
            if args.show:
                print(f"{name:>12} {figures[name]['error'][-1]:.2f} {line.text} → {heard}")
    close_voices()
    print(f"{len(said_lines)} Japanese lines of the spoken corpus")
    print(f"{'variant':<14}{'reading CER':>12}{'heard exactly':>15}{'median time':>13}")
    for name, figure in figures.items():
        exact = sum(error == 0 for error in figure["error"])
        median = statistics.median(figure["seconds"]) * 1000
        print(f"{name:<14}{statistics.mean(figure['error']):>12.3f}{exact:>11}/{len(said_lines)}{median:>10.0f} ms")


if __name__ == "__main__":
    main()
