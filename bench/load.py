"""Load benchmark: a class of browsers, then a thousand short runs, against a real uvicorn.

Starts the app on 127.0.0.1 (loopback only; the server's own defaults unless flags say
otherwise) and drives it from one asyncio process:

1. ``--browsers`` browsers arrive at once. Each loads an experiment page with its script,
   stylesheet and the bundled Plotly.js; then all press Run together and hold the run's SSE
   stream open. A
   browser refused with 429 (queue full) watches a run another one started, as a class
   watching the teacher's screen does. Once all of them watch, ``--disconnect`` of them drop
   their stream at the next progress event; the rest stay until ``done`` or ``error``.
2. ``--short-runs`` short runs (the ``ticker`` test experiment, a few frames each), streamed
   to their end by ``--leak-clients`` clients; server memory after the first 100 and after
   all of them shows whether finished runs leak.

Prints requests/s, time to the first frame (p50/p95), 5xx and connection errors, 429s,
lost terminal events of accepted runs (a held stream that ended without ``done``/``error``),
and the resident memory of the server process (and of its workers) along the way. Bounded:
every phase stops at ``--max-seconds`` overall.

Usage: ``.venv/bin/python bench/load.py [--browsers 50] [--short-runs 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.client import TERMINAL, ServerEvent  # noqa: E402
from tests.servers import Server  # noqa: E402

# Experiments whose default runs take from a fraction of a second to a few on one CPU thread.
PAGES = ("perceptron", "attention", "optimizers", "diffusion", "hopfield", "gelu")
ASSETS = ("/static/experiment_page.js", "/static/style.css", "/vendor/plotly.min.js")


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    connection_errors: list[str] = field(default_factory=list)
    first_event_s: list[float] = field(default_factory=list)  # stream opened -> first frame
    first_live_s: list[float] = field(default_factory=list)  # POST -> the run's first frame
    accepted: set[str] = field(default_factory=set)
    held_to_end: list[tuple[str, str]] = field(default_factory=list)  # (run, last event)
    dropped: set[str] = field(default_factory=set)
    open_streams: int = 0
    most_open_streams: int = 0
    everyone_watching: asyncio.Event | None = None  # droppers leave only once all watch
    watchers: int = 0

    def count(self, response: httpx.Response) -> httpx.Response:
        self.requests += 1
        self.statuses[response.status_code] += 1
        return response

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def rss_mib(pid: int) -> float:
    """Resident memory of one process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory(server: Server) -> tuple[float, float]:
    """(server process, its workers together) in MiB."""
    workers = httpx.get(f"{server.url}/api/health", timeout=30).json()["workers"]
    return (rss_mib(server.process.pid),
            sum(rss_mib(w["pid"]) for w in workers if w["pid"] and w["alive"]))


async def events(response: httpx.Response):
    """Server-Sent Events from a streaming response, as app.client.parse_sse reads them."""
    from app.client import parse_sse

    block: list[str] = []
    async for line in response.aiter_lines():
        if line:
            block.append(line)
            continue
        for event in parse_sse([*block, ""]):
            yield event
        block = []


async def follow(http: httpx.AsyncClient, tally: Tally, run_id: str, drop: bool,
                 posted_at: float | None) -> None:
    """Hold a run's stream: to its end, or until the first progress event when ``drop``."""
    opened: float | None = time.perf_counter()
    last: ServerEvent | None = None
    try:
        async with http.stream("GET", f"/api/runs/{run_id}/events") as response:
            tally.count(response)
            if response.status_code != 200:
                return
            tally.open_streams += 1
            tally.most_open_streams = max(tally.most_open_streams, tally.open_streams)
            if tally.everyone_watching and tally.open_streams >= tally.watchers:
                tally.everyone_watching.set()
            try:
                async for event in events(response):
                    last = event
                    if event.type == "frame" and opened is not None:
                        tally.first_event_s.append(time.perf_counter() - opened)
                        opened = None
                    if (posted_at is not None and event.type == "frame"
                            and event.data.get("op") != "react"):
                        tally.first_live_s.append(time.perf_counter() - posted_at)
                        posted_at = None
                    if drop and event.type == "progress":
                        if tally.everyone_watching is not None:  # unread meanwhile: a stall
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(tally.everyone_watching.wait(), 60)
                        tally.dropped.add(run_id)
                        return
                    if event.type in TERMINAL:
                        break
            finally:
                tally.open_streams -= 1
    except httpx.HTTPError as exc:
        tally.connection_errors.append(f"stream {run_id}: {type(exc).__name__}: {exc}")
        return
    if not drop:
        tally.held_to_end.append((run_id, last.type if last else "nothing"))


async def browser(http: httpx.AsyncClient, tally: Tally, index: int, shared: list[str],
                  started: asyncio.Event, ready: asyncio.Barrier, drop: bool) -> None:
    slug = PAGES[index % len(PAGES)]
    try:
        for path in (f"/e/{slug}", *ASSETS):
            tally.count(await http.get(path))
    except httpx.HTTPError as exc:
        tally.connection_errors.append(f"browser {index}: {type(exc).__name__}: {exc}")
    await ready.wait()  # the whole class presses Run together
    try:
        posted_at = time.perf_counter()
        response = tally.count(await http.post(
            "/api/runs", json={"experiment": slug, "params": {"seed": index}}))
    except httpx.HTTPError as exc:
        tally.connection_errors.append(f"browser {index}: {type(exc).__name__}: {exc}")
        return
    if response.status_code == 201:
        run_id = response.json()["id"]
        tally.accepted.add(run_id)
        shared.append(run_id)
        started.set()
        await follow(http, tally, run_id, drop, posted_at)
    elif response.status_code == 429:
        assert response.headers.get("retry-after"), "429 without Retry-After"
        await started.wait()  # watch one of the latest runs: queued, so it lasts
        await follow(http, tally, random.choice(shared[-5:]), drop, None)


async def classroom(url: str, browsers: int, disconnect: int, deadline: float) -> Tally:
    tally = Tally(everyone_watching=asyncio.Event(), watchers=browsers)
    shared: list[str] = []
    started = asyncio.Event()
    limits = httpx.Limits(max_connections=browsers * 2, max_keepalive_connections=browsers * 2)
    async with httpx.AsyncClient(base_url=url, limits=limits,
                                 timeout=httpx.Timeout(300, connect=30)) as http:
        ready = asyncio.Barrier(browsers)
        tasks = [browser(http, tally, i, shared, started, ready, drop=i < disconnect)
                 for i in range(browsers)]
        remaining = max(1.0, deadline - time.monotonic())
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=remaining)
        # Accepted runs whose only watchers left are cancelled after the unwatched grace;
        # every accepted run must reach a final state either way.
        for run_id in tally.accepted:
            while time.monotonic() < deadline:
                status = tally.count(await http.get(f"/api/runs/{run_id}")).json()["status"]
                if status not in ("queued", "running"):
                    break
                await asyncio.sleep(0.5)
    return tally


async def short_runs(url: str, count: int, clients: int, deadline: float,
                     at: int, on_reached) -> tuple[Tally, int]:
    """``count`` short runs streamed to their end by ``clients`` at a time; ``on_reached`` is
    called once ``at`` of them have finished."""
    tally = Tally()
    done = 0
    lock = asyncio.Lock()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal done
        while not queue.empty() and time.monotonic() < deadline:
            n = queue.get_nowait()
            response = tally.count(await http.post("/api/runs", json={
                "experiment": "ticker", "params": {"steps": 5, "points": 50, "seed": n}}))
            if response.status_code == 429:
                await asyncio.sleep(float(response.headers["retry-after"]))
                queue.put_nowait(n)
                continue
            run_id = response.json()["id"]
            tally.accepted.add(run_id)
            await follow(http, tally, run_id, False, time.perf_counter())
            async with lock:
                done += 1
                if done == at:
                    await on_reached()

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return tally, done


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(name: str, tally: Tally, seconds: float) -> None:
    lost = [r for r, last in tally.held_to_end if last not in TERMINAL]
    print(f"\n== {name} ({seconds:.1f} s)")
    print(f"requests: {tally.requests} ({tally.requests / seconds:.1f}/s), "
          f"statuses {dict(sorted(tally.statuses.items()))}")
    print(f"5xx: {tally.server_errors}, connection errors: {len(tally.connection_errors)}, "
          f"429s: {tally.statuses[429]}")
    for error in tally.connection_errors[:5]:
        print(f"  {error}")
    print(f"runs accepted: {len(tally.accepted)}, streams held to the end: "
          f"{len(tally.held_to_end)}, dropped mid-stream: {len(tally.dropped)}, "
          f"lost done/error events: {len(lost)}, most streams open at once: "
          f"{tally.most_open_streams}")
    if tally.first_event_s:
        p50 = statistics.median(tally.first_event_s)
        print(f"stream opened -> first frame: p50 {1e3 * p50:.0f} ms, "
              f"p95 {1e3 * percentile(tally.first_event_s, 0.95):.0f} ms "
              f"({len(tally.first_event_s)} streams)")
    if tally.first_live_s:
        print(f"run started -> its first live frame (queue wait included): p50 "
              f"{statistics.median(tally.first_live_s):.2f} s, p95 "
              f"{percentile(tally.first_live_s, 0.95):.2f} s ({len(tally.first_live_s)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browsers", type=int, default=50)
    parser.add_argument("--disconnect", type=int, default=10,
                        help="browsers that drop their stream mid-run")
    parser.add_argument("--short-runs", type=int, default=1000)
    parser.add_argument("--leak-clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None,
                        help="PLAYGROUND_WORKERS (default: the server's own, one per spare core)")
    parser.add_argument("--max-seconds", type=float, default=900)
    args = parser.parse_args()

    deadline = time.monotonic() + args.max_seconds
    tmp = ROOT / ".bench"
    tmp.mkdir(exist_ok=True)
    (tmp / "load.db").unlink(missing_ok=True)
    env = {"PLAYGROUND_DEVICE": "cpu"}
    if args.workers:
        env["PLAYGROUND_WORKERS"] = str(args.workers)
    server = Server(env, tmp / "load.db").start()
    try:
        health = httpx.get(f"{server.url}/api/health").json()
        print(f"server pid {server.process.pid} on {server.url}: {len(health['workers'])} "
              f"worker(s), queue {health['queue_size']}, {os.cpu_count()} CPU cores")
        with httpx.Client(base_url=server.url, timeout=120) as http:  # warm the workers
            for slug in ("ticker", *PAGES):
                run = http.post("/api/runs", json={"experiment": slug, "params": {}}).json()
                with http.stream("GET", f"/api/runs/{run['id']}/events") as response:
                    for _ in response.iter_lines():
                        pass
        before = memory(server)
        print(f"memory before: server {before[0]:.0f} MiB, workers {before[1]:.0f} MiB")

        started = time.perf_counter()
        tally = asyncio.run(classroom(server.url, args.browsers, args.disconnect, deadline))
        report(f"{args.browsers} browsers at once", tally, time.perf_counter() - started)
        after = memory(server)
        print(f"memory after: server {after[0]:.0f} MiB, workers {after[1]:.0f} MiB")

        marks: dict[str, tuple[float, float]] = {}

        async def at_100() -> None:
            marks["100"] = await asyncio.to_thread(memory, server)

        started = time.perf_counter()
        tally, done = asyncio.run(short_runs(server.url, args.short_runs, args.leak_clients,
                                             deadline, min(100, args.short_runs), at_100))
        seconds = time.perf_counter() - started
        report(f"{done} short runs, {args.leak_clients} clients", tally, seconds)
        marks["end"] = memory(server)
        if "100" in marks:
            first, last = marks["100"][0], marks["end"][0]
            print(f"server memory after 100 runs {first:.1f} MiB, after {done}: {last:.1f} MiB "
                  f"({100 * (last / first - 1):+.1f}%); workers {marks['100'][1]:.0f} -> "
                  f"{marks['end'][1]:.0f} MiB; {done / seconds:.1f} runs/s")
        print(json.dumps({"health": httpx.get(f"{server.url}/api/health").json()}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
