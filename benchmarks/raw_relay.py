"""The bare relay `benchmarks/relay_capacity.py` measures our server against: a `websockets` server that turns each
kiosk frame into `input_audio_buffer.append` on its own upstream session and reply deltas back into binary frames,
nothing else (no routing, workflow, accounting or limits).

    python benchmarks/raw_relay.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import uvloop
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.client import APPEND_PREFIX


async def raw_relay(kiosk, upstream_url: str) -> None:
    """One kiosk socket relayed to one upstream session with nothing in between."""
    async with websockets.connect(
        upstream_url, additional_headers={"Authorization": "Bearer sk-raw"}, max_size=None, compression=None
    ) as upstream:

        async def down() -> None:
            async for raw in upstream:
                if raw.startswith('{"type": "response.output_audio.delta"'):
                    await kiosk.send(base64.b64decode(json.loads(raw)["delta"]))
                elif raw.startswith('{"type": "response.done"'):
                    await kiosk.send('{"type": "response.done"}')

        task = asyncio.ensure_future(down())
        try:
            async for frame in kiosk:
                if isinstance(frame, bytes):
                    await upstream.send(APPEND_PREFIX + base64.b64encode(frame).decode() + '"}')
                elif json.loads(frame).get("type") == "session.start":
                    await kiosk.send(json.dumps({"type": "session.started", "mode": "realtime"}))
        finally:
            task.cancel()


async def serve_raw_relay(port: int, upstream_url: str) -> None:
    async with websockets.serve(
        lambda kiosk: raw_relay(kiosk, upstream_url), "127.0.0.1", port, max_size=None, compression=None
    ):
        await asyncio.Future()


if __name__ == "__main__":
    uvloop.run(serve_raw_relay(int(sys.argv[1]), sys.argv[2]))
