# SPDX-License-Identifier: GPL-3.0-or-later
"""Piper TTS worker: a separate program, run as its own process, that imports piper-tts.

piper-tts 1.8 is GPL-3.0-or-later, so this file (the only one importing it) is offered under
the same licence and runs out of process: the Django process only talks to it over pipes and
never imports GPL code. Self-contained on purpose (run as a script with ``python -I``).

Protocol (binary-safe, one request at a time):
  startup  -> stdout: one JSON line {"ready": true, "sample_rate": N, "load_seconds": s}
  request  <- stdin:  one JSON line {"text": "...", "length_scale": 1.0,
                                     "noise_scale": 0.0, "noise_w_scale": 0.0}
  response -> stdout: one JSON line {"ok": true, "nbytes": N, "sample_rate": R, "seconds": s}
              then N bytes of PCM16 LE mono at R Hz; or {"ok": false, "error": "..."}
  EOF on stdin -> exit 0.
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    # Private protocol channel: anything a library prints goes to stderr, not into the pipe.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    t0 = time.perf_counter()
    import onnxruntime
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(args.model, config_path=args.config)
    if args.threads:
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        voice.session = onnxruntime.InferenceSession(args.model, sess_options=opts, providers=["CPUExecutionProvider"])
    rate = voice.config.sample_rate
    load_seconds = time.perf_counter() - t0

    def send(header: dict, payload: bytes = b"") -> None:
        proto.write(json.dumps(header).encode() + b"\n" + payload)

    send({"ready": True, "sample_rate": rate, "load_seconds": load_seconds, "pid": os.getpid()})
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            t1 = time.perf_counter()
            cfg = SynthesisConfig(
                length_scale=req.get("length_scale"),
                noise_scale=req.get("noise_scale", 0.0),
                noise_w_scale=req.get("noise_w_scale", 0.0),
            )
            pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(req["text"], cfg))
            send({"ok": True, "nbytes": len(pcm), "sample_rate": rate, "seconds": time.perf_counter() - t1}, pcm)
        except Exception as exc:  # report and keep serving
            send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
