"""Streaming benchmark: what the run manager and SSE add on top of the engine.

Starts a real uvicorn on 127.0.0.1 (one worker) and prints:

* time from ``POST /api/runs`` to the first live frame on the SSE stream (median, p95);
* frames per second delivered to one SSE client (a run that only emits frames);
* for each built-in experiment, wall time through the API (POST to ``done``) divided by the
  same experiment run in-process with ``engine.core.run_to_end`` (overhead ratio; both with
  one torch thread, as the worker uses).

Usage: ``.venv/bin/python bench/stream.py [--runs N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.client import iter_events  # noqa: E402
from engine.core import RunContext, run_to_end  # noqa: E402
from engine.experiments import EXPERIMENTS  # noqa: E402
from tests.servers import Server  # noqa: E402


def post(http: httpx.Client, experiment: str, params: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    response = http.post("/api/runs", json={"experiment": experiment, "params": params})
    response.raise_for_status()
    return started, response.json()


def first_frame_latency(http: httpx.Client, runs: int) -> list[float]:
    """POST to the client holding the first frame the run itself produced.

    The stream is opened with ``Last-Event-ID: 0`` so a run that is faster than the
    subscription still delivers its own first frame (from the event log), not a snapshot.
    """
    latencies = []
    for seed in range(runs):
        started, run = post(http, "perceptron", {"seed": seed})
        for event in iter_events(http, run["urls"]["events"], last_event_id="0"):
            if event.type == "frame" and event.data["op"] != "react":
                latencies.append(time.perf_counter() - started)
                break
        for _ in iter_events(http, run["urls"]["events"]):
            pass  # let it finish before the next one
    return latencies


def frames_per_second(http: httpx.Client, steps: int) -> float:
    _, run = post(http, "ticker", {"steps": steps})
    count, first, last = 0, None, None
    for event in iter_events(http, run["urls"]["events"]):
        if event.type == "frame" and event.data["op"] == "extend":
            now = time.perf_counter()
            first = first or now
            last, count = now, count + 1
    return (count - 1) / (last - first)


def overhead_ratios(http: httpx.Client, repeats: int) -> dict[str, tuple[float, float, float]]:
    torch.set_num_threads(1)
    ratios = {}
    for slug, experiment in EXPERIMENTS.items():
        params = experiment.Params()
        direct, through_api = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            run_to_end(experiment, params, RunContext(seed=params.seed, device="cpu"))
            direct.append(time.perf_counter() - started)
            started, run = post(http, slug, {})
            last = list(iter_events(http, run["urls"]["events"]))[-1]
            assert last.type == "done", last
            through_api.append(time.perf_counter() - started)
        d, a = statistics.median(direct), statistics.median(through_api)
        ratios[slug] = (d, a, a / d)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs for the latency median")
    parser.add_argument("--repeats", type=int, default=3, help="runs per experiment for ratios")
    parser.add_argument("--frames", type=int, default=5000, help="frames for the throughput run")
    args = parser.parse_args()

    tmp = Path(ROOT / ".bench")
    tmp.mkdir(exist_ok=True)
    server = Server({"PLAYGROUND_WORKERS": "1", "PLAYGROUND_DEVICE": "cpu"}, tmp / "bench.db")
    (tmp / "bench.db").unlink(missing_ok=True)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for slug in ("ticker", "perceptron"):  # warm the worker's lazy imports
                _, run = post(http, slug, {})
                list(iter_events(http, run["urls"]["events"]))
            latencies = sorted(first_frame_latency(http, args.runs))
            fps = frames_per_second(http, args.frames)
            ratios = overhead_ratios(http, args.repeats)
    finally:
        server.stop()

    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    print(f"POST -> first frame: median {1e3 * statistics.median(latencies):.1f} ms, "
          f"p95 {1e3 * p95:.1f} ms over {len(latencies)} perceptron runs")
    print(f"frames delivered to one SSE client: {fps:,.0f} frames/s ({args.frames} frames)")
    print("experiment      in-process   through API   overhead ratio")
    for slug, (direct, api, ratio) in ratios.items():
        print(f"{slug:<14} {direct * 1e3:9.0f} ms  {api * 1e3:9.0f} ms   {ratio:8.2f}x")


if __name__ == "__main__":
    main()
