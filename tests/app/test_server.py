"""Against real uvicorn processes on 127.0.0.1: live streaming, limits, faults, restarts."""

import os
import signal
import time

import httpx
import pytest

from app.client import iter_events, parse_sse
from app.encoding import decode
from app.figures import FigureState

pytestmark = pytest.mark.server


def start(http, **params):
    response = http.post("/api/runs", json={"experiment": "ticker", "params": params})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_status(http, run_id, wanted, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"/api/runs/{run_id}").json()["status"]
        if status in wanted:
            return status
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {status}, wanted {wanted}")


def test_frames_arrive_live_while_the_run_works(make_server):
    server = make_server(workers=1)
    with httpx.Client(base_url=server.url) as http:
        run = start(http, steps=40, delay_s=0.05)
        arrivals = [(time.monotonic(), e.type) for e in iter_events(http, run["urls"]["events"])]
    frames = [t for t, kind in arrivals if kind == "frame"]
    assert arrivals[-1][1] == "done"
    assert frames[-1] - frames[0] > 1.0  # spread over the run, not delivered at the end


def test_delete_cancels_a_running_run(make_server):
    server = make_server(workers=1)
    with httpx.Client(base_url=server.url) as http:
        run = start(http, steps=10_000, delay_s=0.01)
        stream = iter_events(http, run["urls"]["events"])
        assert next(e for e in stream if e.type == "progress")
        assert http.delete(f"/api/runs/{run['id']}").status_code == 202
        last = list(stream)[-1]
        assert last.type == "done" and last.data["status"] == "cancelled"
        assert http.get(f"/api/runs/{run['id']}").json()["status"] == "cancelled"


def test_queue_full_answers_429_with_retry_after(make_server):
    server = make_server(workers=1, queue_size=1, retry_after_s=7)
    with httpx.Client(base_url=server.url) as http:
        running = start(http, steps=1000, delay_s=0.02)
        wait_for_status(http, running["id"], {"running"})
        queued = start(http, steps=1)
        refused = http.post("/api/runs", json={"experiment": "ticker", "params": {}})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "7"
        assert "queue is full" in refused.json()["detail"]
        http.delete(f"/api/runs/{running['id']}")
        assert wait_for_status(http, queued["id"], {"done"}) == "done"


def test_time_limit_stops_the_run_and_kills_a_stuck_worker(make_server):
    server = make_server(workers=1, run_time_limit_s=1, stop_grace_s=0.5)
    with httpx.Client(base_url=server.url) as http:
        polite = start(http, steps=10_000, delay_s=0.01)
        last = list(iter_events(http, polite["urls"]["events"]))[-1]
        assert last.type == "error" and "time limit" in last.data["message"]
        pid_before = http.get("/api/health").json()["workers"][0]["pid"]
        stubborn = start(http, steps=10, hang_s=60)
        last = list(iter_events(http, stubborn["urls"]["events"]))[-1]
        assert last.type == "error" and "time limit" in last.data["message"]
        assert http.get("/api/health").json()["workers"][0]["pid"] != pid_before
        assert list(iter_events(http, start(http, steps=3)["urls"]["events"]))[-1].type == "done"


def test_a_killed_worker_fails_its_run_and_is_replaced(make_server):
    server = make_server(workers=1)
    with httpx.Client(base_url=server.url) as http:
        run = start(http, steps=10_000, delay_s=0.01)
        stream = iter_events(http, run["urls"]["events"])
        next(e for e in stream if e.type == "progress")
        pid = http.get("/api/health").json()["workers"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        last = list(stream)[-1]
        assert last.type == "error" and "died" in last.data["message"]
        exiting = start(http, steps=10, failure="exit")
        assert list(iter_events(http, exiting["urls"]["events"]))[-1].type == "error"
        assert list(iter_events(http, start(http, steps=3)["urls"]["events"]))[-1].type == "done"
        assert http.get("/api/health").json()["workers"][0]["alive"]


def test_a_run_nobody_watches_is_cancelled_and_a_polled_one_is_kept(make_server):
    # A generous stop grace: on a loaded machine a cancelled run may take a moment to notice,
    # and being killed for it would end it as an error instead of cancelled.
    server = make_server(workers=2, unwatched_grace_s=2, stop_grace_s=15)
    with httpx.Client(base_url=server.url) as http:
        abandoned = start(http, steps=3000, delay_s=0.01)
        polled = start(http, steps=400, delay_s=0.01)
        assert wait_for_status(http, polled["id"], {"done", "cancelled"}) == "done"
        time.sleep(1)
        assert http.get(f"/api/runs/{abandoned['id']}").json()["status"] == "cancelled"


def test_a_client_that_disconnects_mid_stream_gets_its_run_cancelled(make_server):
    server = make_server(workers=1, unwatched_grace_s=1, stop_grace_s=15)
    with httpx.Client(base_url=server.url) as http:
        run = start(http, steps=5000, delay_s=0.01)
        stream = iter_events(http, run["urls"]["events"])
        next(e for e in stream if e.type == "progress")
        stream.close()  # drops the connection
        time.sleep(3)
        status = wait_for_status(http, run["id"], {"cancelled", "error", "done"})
        assert status == "cancelled"


def test_a_stalled_reader_neither_slows_the_run_nor_loses_the_end(make_server):
    server = make_server(workers=1, subscriber_buffer_bytes=4096)
    with httpx.Client(base_url=server.url) as http:
        run = start(http, steps=3000, points=5)
        with http.stream("GET", run["urls"]["events"]) as response:
            started = time.monotonic()
            status = wait_for_status(http, run["id"], {"done"})  # while nobody reads the stream
            assert status == "done" and time.monotonic() - started < 15
            events = list(parse_sse(response.iter_lines()))
        assert events[-1].type == "done"
        # Whether its backlog was coalesced into a snapshot or the socket buffers absorbed it
        # all depends on timing; either way, replaying what it got gives every point.
        initial = decode(http.get("/api/experiments/ticker").json()["figures"])
        state = FigureState(initial)
        for frame in (decode(e.data) for e in events if e.type == "frame"):
            state.apply(frame["figure"], frame["op"], frame["update"], frame["indices"],
                        frame["max_points"])
        assert len(state.figures["ticks"]["data"][0]["x"]) == 15000


def test_finished_runs_survive_a_restart(make_server, tmp_path):
    db = tmp_path / "shared.db"
    first = make_server(db_path=db, workers=1)
    with httpx.Client(base_url=first.url) as http:
        run = start(http, steps=5, points=20)
        assert list(iter_events(http, run["urls"]["events"]))[-1].type == "done"
        before = http.get(f"/api/runs/{run['id']}").json()
    first.stop()
    second = make_server(db_path=db, workers=1)
    with httpx.Client(base_url=second.url) as http:
        after = http.get(f"/api/runs/{run['id']}").json()
        assert after == before
        replay = list(iter_events(http, run["urls"]["events"]))
        assert replay[-1].type == "done" and replay[-1].data["checks"] == before["checks"]
        assert http.get(f"/runs/{run['id']}").status_code == 200
        asked = http.post(f"/api/runs/{run['id']}/queries", json={"scale": 2})  # stored weights
        assert asked.status_code == 201, asked.text
        last = list(iter_events(http, asked.json()["urls"]["events"]))[-1]
        assert last.data["metrics"]["scaled"] == 2 * before["metrics"]["total"]
