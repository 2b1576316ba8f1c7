"""One run's live state and its fan-out to Server-Sent-Event subscribers.

The run manager's thread for a worker is the only writer (``publish_frame``, ``finish``);
subscribers read on the event loop. A lock guards the state; each event is JSON-encoded
once, at publish, and shared by every subscriber.

Every event gets the next integer id. The most recent events, up to ``log_bytes`` of JSON,
are kept so a reconnect with ``Last-Event-ID`` resumes exactly; older resumes, late subscribers and
subscribers that fell behind get a *snapshot* instead: one ``react`` frame per figure plus
the metrics and progress, which is the same state they would have reached.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from app.encoding import dumps
from app.figures import FigureState, normalise_figure

ACTIVE = ("queued", "running")
TERMINAL_EVENTS = ("done", "error")


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: str  # JSON


def _copy_structure(value: Any) -> Any:
    """Copy dicts and lists (not arrays, which frames replace rather than mutate), so a record
    can be encoded outside the lock while the writer goes on changing the figures."""
    if isinstance(value, dict):
        return {k: _copy_structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_structure(v) for v in value]
    return value


class Run:
    """A run from submission to its final record."""

    def __init__(self, experiment: str, params: dict[str, Any], figures: dict[str, Any],
                 log_bytes: int, query: dict[str, Any] | None = None,
                 parent: str | None = None) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.experiment = experiment
        self.params = params
        self.query = query  # set for a query on a finished run (``parent``)
        self.parent = parent
        self.artifact: bytes | None = None  # what this run leaves for queries on it
        self.input_artifact: bytes | None = None  # what a query run gets from its parent
        self.input_uploads: dict[str, Any] = {}  # pixels of the uploads its params name
        self.status = "queued"
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.device: str | None = None
        self.error: str | None = None
        self.metrics: dict[str, Any] = {}
        self.progress: dict[str, int] | None = None
        self.checks: list[dict[str, Any]] = []
        self.state = FigureState(figures)
        self.cancel_requested = False
        self.last_seen = time.monotonic()
        self._seq = 0
        self._log: deque[Event] = deque()
        self._log_bytes = 0
        self._log_budget = log_bytes
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()

    # ----- writer side (the run manager's thread) -------------------------------------

    def _publish_locked(self, event_type: str, payload: Any) -> None:
        self._seq += 1
        event = Event(self._seq, event_type, dumps(payload))
        self._log.append(event)
        self._log_bytes += len(event.data)
        while self._log_bytes > self._log_budget and len(self._log) > 1:
            self._log_bytes -= len(self._log.popleft().data)
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def mark_running(self, device: str) -> None:
        with self._lock:
            self.status, self.started_at, self.device = "running", time.time(), device
            self._publish_locked("status", {"status": "running", "device": device})

    def publish_frame(self, frame: dict[str, Any]) -> None:
        """Apply a worker's frame to the state and fan it out as frame/metrics/progress events."""
        if frame.get("op") == "react":
            frame = {**frame, "update": normalise_figure(frame["update"])}
        with self._lock:
            if frame.get("op"):
                self.state.apply(frame["figure"], frame["op"], frame["update"],
                                 frame.get("indices"), frame.get("max_points"))
                self._publish_locked("frame", {key: frame.get(key) for key in
                                               ("figure", "op", "update", "indices", "max_points")})
            if frame.get("metrics"):
                self.metrics.update(frame["metrics"])
                self._publish_locked("metrics", frame["metrics"])
            if frame.get("progress"):
                step, total = frame["progress"]
                self.progress = {"step": int(step), "total": int(total)}
                self._publish_locked("progress", self.progress)
            if frame.get("checks") is not None:
                self.checks = frame["checks"]
            if frame.get("artifact") is not None:
                self.artifact = frame["artifact"]

    def finish(self, status: str, error: str | None = None) -> None:
        """End the run: ``done``/``cancelled`` send a ``done`` event, ``error`` an ``error`` one."""
        with self._lock:
            if self.status not in ACTIVE:
                return
            self.status, self.error, self.finished_at = status, error, time.time()
            if status == "error":
                self._publish_locked("error", {"message": error})
            else:
                self._publish_locked("done", {"status": status, "checks": self.checks,
                                              "metrics": self.metrics})

    # ----- reader side ----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE

    def watched(self, grace_s: float) -> bool:
        """Someone streams this run, or polled or subscribed within the grace period."""
        with self._lock:
            return bool(self._subscribers) or time.monotonic() - self.last_seen < grace_s

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def record(self) -> dict[str, Any]:
        """What ``GET /api/runs/{id}`` returns and the store keeps."""
        with self._lock:
            return {
                "id": self.id, "experiment": self.experiment, "params": self.params,
                "query": self.query, "parent": self.parent,
                "status": self.status, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "device": self.device, "figures": _copy_structure(self.state.figures),
                "metrics": dict(self.metrics),
                "progress": self.progress, "checks": list(self.checks), "error": self.error,
            }

    def _snapshot_locked(self) -> list[Event]:
        seq = self._seq
        events = [Event(seq, "status", dumps({"status": self.status, "device": self.device}))]
        events += [
            Event(seq, "frame", dumps({"figure": name, "op": "react", "update": fig,
                                       "indices": None, "max_points": None}))
            for name, fig in self.state.figures.items()
        ]
        if self.metrics:
            events.append(Event(seq, "metrics", dumps(self.metrics)))
        if self.progress:
            events.append(Event(seq, "progress", dumps(self.progress)))
        if self.finished:
            events.append(self._terminal_event_locked())
        return events

    def _terminal_event_locked(self) -> Event:
        if self.status == "error":
            return Event(self._seq, "error", dumps({"message": self.error}))
        return Event(self._seq, "done", dumps({"status": self.status, "checks": self.checks,
                                               "metrics": self.metrics}))

    def subscribe(self, loop: asyncio.AbstractEventLoop, buffer_bytes: int,
                  last_event_id: int | None = None) -> Subscription:
        """Register a subscriber; its first events resume after ``last_event_id`` or snapshot."""
        with self._lock:
            self.touch()
            oldest = self._log[0].id if self._log else self._seq + 1
            if last_event_id is not None and oldest - 1 <= last_event_id <= self._seq:
                first = [e for e in self._log if e.id > last_event_id]
                if self.finished and not first:
                    first = [self._terminal_event_locked()]
            else:
                first = self._snapshot_locked()
            subscription = Subscription(self, loop, buffer_bytes, first)
            if not self.finished:
                self._subscribers.add(subscription)
            return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)
            self.touch()


class Subscription:
    """One SSE client's bounded buffer. When it overflows, the backlog is dropped and replaced
    by one snapshot, so a stalled browser costs bounded memory and never slows the run."""

    def __init__(self, run: Run, loop: asyncio.AbstractEventLoop, buffer_bytes: int,
                 first: list[Event]) -> None:
        self.run = run
        self._loop = loop
        self._budget = buffer_bytes
        self._pending: deque[Event] = deque(first)
        self._pending_bytes = 0  # of live events; the first (snapshot or resume) is not counted
        self._overflowed = False
        self._wake = asyncio.Event()
        self._wake_scheduled = False
        self.coalesced = 0  # how many times the backlog was replaced by a snapshot

    def offer(self, event: Event) -> None:
        """Called with the run's lock held, from the writer thread."""
        if self._overflowed:
            return
        if self._pending_bytes + len(event.data) > self._budget:
            self._pending.clear()
            self._pending_bytes = 0
            self._overflowed = True
            self.coalesced += 1
        else:
            self._pending.append(event)
            self._pending_bytes += len(event.data)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> list[Event]:
        with self.run._lock:
            self._wake_scheduled = False
            self._pending_bytes = 0
            if self._overflowed:
                self._overflowed = False
                self._pending.clear()
                return self.run._snapshot_locked()
            events = list(self._pending)
            self._pending.clear()
            return events

    async def events(self) -> AsyncIterator[Event]:
        """Yield events until the run's terminal event (FastAPI adds keep-alive comments)."""
        try:
            while True:
                for event in self._take():
                    yield event
                    if event.type in TERMINAL_EVENTS:
                        return
                await self._wake.wait()
                self._wake.clear()
        finally:
            self.run.unsubscribe(self)
