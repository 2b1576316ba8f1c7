"""Run fan-out: ids, resume, snapshots and bounded subscriber buffers (no workers needed)."""

import asyncio
import json

import numpy as np
import plotly.graph_objects as go

from app.encoding import decode
from app.runs import Run


def new_run(log_bytes=1 << 20):
    return Run("ticker", {}, {"f": go.Figure(go.Scatter(x=[], y=[]))}, log_bytes)


def point(i):
    return {"figure": "f", "op": "extend", "update": {"x": [[float(i)]], "y": [[float(i)]]},
            "indices": [0], "metrics": {"i": i}, "progress": (i + 1, 100)}


async def collect(subscription, limit=10_000):
    events = []
    async for event in subscription.events():
        events.append(event)
        if len(events) >= limit:
            break
    return events


def test_event_ids_increase_and_a_finished_run_ends_with_done():
    async def scenario():
        run = new_run()
        sub = run.subscribe(asyncio.get_running_loop(), buffer_bytes=1 << 20)
        run.mark_running("cpu")
        for i in range(3):
            run.publish_frame(point(i))
        run.finish("done")
        return await collect(sub)

    events = asyncio.run(scenario())
    live = [e for e in events if e.id > 0]
    assert [e.id for e in live] == list(range(1, len(live) + 1))
    assert events[-1].type == "done" and json.loads(events[-1].data)["status"] == "done"


def test_resume_after_last_event_id_sends_exactly_the_missed_events():
    async def scenario():
        run = new_run()
        run.mark_running("cpu")
        for i in range(5):
            run.publish_frame(point(i))
        run.finish("done")
        return await collect(run.subscribe(asyncio.get_running_loop(), 1 << 20, last_event_id=7))

    events = asyncio.run(scenario())
    assert [e.id for e in events] == list(range(8, events[-1].id + 1))
    assert events[-1].type == "done"


def test_a_late_or_too_old_resume_gets_the_current_state_as_a_snapshot():
    async def scenario():
        run = new_run(log_bytes=400)  # a few events' worth
        run.mark_running("cpu")
        for i in range(10):
            run.publish_frame(point(i))
        run.finish("done")
        return await collect(run.subscribe(asyncio.get_running_loop(), 1 << 20, last_event_id=1))

    events = asyncio.run(scenario())
    react = [json.loads(e.data) for e in events if e.type == "frame"]
    assert react[0]["op"] == "react"
    assert np.array_equal(decode(react[0]["update"]["data"][0]["x"]), np.arange(10.0))
    assert events[-1].type == "done"


def test_a_stalled_subscriber_is_coalesced_to_a_snapshot_and_memory_stays_bounded():
    async def scenario():
        run = new_run()
        sub = run.subscribe(asyncio.get_running_loop(), buffer_bytes=1024)
        run.mark_running("cpu")
        for i in range(500):  # the subscriber reads nothing meanwhile
            run.publish_frame(point(i))
            assert sub._pending_bytes <= 1024
        run.finish("done")
        return sub, await collect(sub)

    sub, events = asyncio.run(scenario())
    assert sub.coalesced >= 1
    assert len(events) < 20
    frames = [json.loads(e.data) for e in events if e.type == "frame"]
    x = decode(frames[-1]["update"]["data"][0]["x"])
    assert np.array_equal(x, np.arange(500.0))  # nothing lost: the snapshot has every point
    assert events[-1].type == "done"


def test_errors_end_the_stream_with_the_message():
    async def scenario():
        run = new_run()
        sub = run.subscribe(asyncio.get_running_loop(), 1 << 20)
        run.mark_running("cpu")
        run.finish("error", "boom")
        run.finish("done")  # a second ending is ignored
        return run, await collect(sub)

    run, events = asyncio.run(scenario())
    assert run.status == "error"
    assert events[-1].type == "error" and json.loads(events[-1].data) == {"message": "boom"}


def test_the_resume_log_is_bounded_in_bytes():
    run = new_run(log_bytes=2000)
    run.mark_running("cpu")
    for i in range(500):
        run.publish_frame(point(i))
    assert sum(len(e.data) for e in run._log) <= 2000
    assert run._log[-1].id == run._seq  # the newest events are the ones kept
