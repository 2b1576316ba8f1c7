"""Attention benchmark: training speed of the default model, and what streaming maps costs.

Runs the ``attention`` experiment in-process with its default params on the CPU with one
torch thread (as a worker does) and prints, as the median of ``--runs`` runs:

* training steps per second (steps over the wall time up to the last training frame);
* the share of the run's wall time spent on attention maps: building their frames (the
  forward pass on the probe, copying every layer×head matrix out as float32; timed inside
  ``attention._map_frames``) plus encoding them for the wire (``app.workers.frame_message``
  and ``app.encoding.dumps``, typed arrays), against the target of 10 %;
* the size of one map update on the wire.

Usage: ``.venv/bin/python bench/attention.py [--runs N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.encoding import dumps  # noqa: E402
from app.workers import frame_message  # noqa: E402
from engine.core import RunContext  # noqa: E402
from engine.experiments import attention  # noqa: E402

MAP_FIGURES = {"attention", "decoder_attention", "cross_attention", "probe"}


def one_run(params: attention.AttentionParams) -> dict[str, float]:
    build = 0.0
    original = attention._map_frames

    def timed(*args, **kwargs):
        nonlocal build
        started = time.perf_counter()
        frames = original(*args, **kwargs)
        build += time.perf_counter() - started
        return frames

    attention._map_frames = timed
    encode, updates, wire_bytes, trained_at = 0.0, 0, 0, 0.0
    try:
        started = time.perf_counter()
        for frame in attention.experiment.run(params, RunContext(params.seed, "cpu")):
            if frame.figure in MAP_FIGURES:
                t = time.perf_counter()
                message = frame_message(frame)
                text = dumps(message)
                encode += time.perf_counter() - t
                wire_bytes += len(text)
                updates += frame.figure == "attention"
            if frame.progress == (params.steps, params.steps):
                trained_at = time.perf_counter() - started
        wall = time.perf_counter() - started
    finally:
        attention._map_frames = original
    return {"wall": wall, "trained": trained_at, "build": build, "encode": encode,
            "updates": updates, "bytes": wire_bytes / max(updates, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = attention.AttentionParams()
    one_run(attention.AttentionParams(steps=20))  # warm-up: imports, allocator, kernels
    results = [one_run(params) for _ in range(args.runs)]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    share = statistics.median((r["build"] + r["encode"]) / r["wall"] for r in results)
    print(f"attention, default params: {params.task}, T = {params.length}, V = {params.vocab}, "
          f"{params.layers} layers × {params.heads} heads, n = {params.width}, q = {params.q}, "
          f"{params.steps} steps of {attention.BATCH}; CPU, 1 torch thread, median of "
          f"{args.runs} runs")
    print(f"training: {params.steps / median('trained'):.0f} steps/s "
          f"({median('trained'):.2f} s to the last step; whole run with checks "
          f"{median('wall'):.2f} s)")
    print(f"attention maps: {median('updates'):.0f} updates, build {median('build'):.3f} s + "
          f"encode {median('encode'):.3f} s = {share:.1%} of the run's wall time "
          f"(target < 10%: {'met' if share < 0.10 else 'MISSED'})")
    print(f"one map update on the wire (maps + probe answer, typed arrays): "
          f"{median('bytes') / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
