"""Run the local Realtime GA emulator, optionally with faults switched on, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

from realtime.emulator import EmulatorConfig, EmulatorServer, Faults, ScriptedBrain
from realtime.emulator.faults import DRILL_PATH, parse_fault


class Command(BaseCommand):
    help = (
        "Serve the OpenAI Realtime GA protocol locally (ws://HOST:PORT/v1/realtime?model=...). "
        f"Fault knobs can be set here and changed while it runs with GET {DRILL_PATH}?knob=value (same bearer key)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (0: any free port).")
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on; keep it local.")
        parser.add_argument(
            "--brain",
            choices=("scripted", "reception"),
            default="scripted",
            help="scripted: a fixed polite reply with a synthetic tone. reception: the factory named by the "
            "REALTIME_EMULATOR_BRAIN setting (local speech engines and rule-based understanding).",
        )
        parser.add_argument(
            "--accept-key", action="append", dest="accept_keys", help="Accepted API key (repeat); default: any."
        )
        parser.add_argument("--max-session-seconds", type=float, default=3600.0, help="Session lifetime (60 min).")
        parser.add_argument(
            "--pace", type=float, default=0.25, help="Wall seconds per second of reply audio (0.25: 4x real time)."
        )
        for field in dataclasses.fields(Faults):
            parser.add_argument(
                f"--fault-{field.name.replace('_', '-')}",
                dest=f"fault_{field.name}",
                metavar="VALUE",
                help=f"Fault knob {field.name} ({field.type}).",
            )

    def handle(self, *args, port: int, host: str, brain: str, accept_keys, max_session_seconds, pace, **options):
        try:
            faults = Faults(
                **{
                    field.name: parse_fault(field.name, options[f"fault_{field.name}"])
                    for field in dataclasses.fields(Faults)
                    if options.get(f"fault_{field.name}") is not None
                }
            )
            faults.validate()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        config = EmulatorConfig(
            accepted_keys=frozenset(accept_keys) if accept_keys else None,
            max_session_seconds=max_session_seconds,
            pace=pace,
        )
        server = EmulatorServer(self._brain(brain), host=host, port=port, config=config, faults=faults)
        asyncio.run(self._serve(server))
        self.stdout.write(f"Served {len(server.sessions)} session(s).")

    def _brain(self, kind: str):
        if kind == "scripted":
            return ScriptedBrain()
        factory = getattr(settings, "REALTIME_EMULATOR_BRAIN", None)
        if not factory:
            raise CommandError(
                "--brain reception needs the REALTIME_EMULATOR_BRAIN setting (a dotted path to a factory)."
            )
        return import_string(factory)()

    async def _serve(self, server: EmulatorServer) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with server:
            self.stdout.write(f"Realtime emulator on {server.url}?model=gpt-realtime", self.style.SUCCESS)
            await stop.wait()
