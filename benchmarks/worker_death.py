"""Benchmark: a worker killed under live kiosks. Two workers behind nginx (`make serve`'s layout over PostgreSQL
and Redis), `--sessions` kiosks each with a Realtime session that has collected the visitor's name; SIGKILL one
worker; the kiosks it held reconnect through nginx and resume on the other. Prints sessions cut and resumed,
the time from the kill to each resumed session (p50/p95/max), and anything asked again or lost.

    python benchmarks/worker_death.py [--sessions 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")
import django

django.setup()  # the upstream emulator runs in this process, with the reception workflow

from tests.support.worker_death import kill_a_worker  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        result = asyncio.run(kill_a_worker(options.sessions, Path(directory)))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if result["problems"] or result["resumed"] != result["cut"] else 0


if __name__ == "__main__":
    sys.exit(main())
