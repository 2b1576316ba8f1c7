"""The run manager: a bounded queue, a pool of worker processes, limits and cancellation.

* ``workers`` runs execute at once, each in its own long-lived process (app.workers).
* At most ``queue_size`` runs wait; ``submit`` raises :class:`QueueFull` beyond that (429).
* A run past ``run_time_limit_s`` is asked to stop, then killed with its worker after
  ``stop_grace_s``; the worker is replaced and the run ends with an ``error`` event.
* A worker that dies mid-run ends that run with an ``error`` event and is replaced.
* A run nobody has subscribed to or polled for ``unwatched_grace_s`` is cancelled.
* Finished runs go to the store and stay readable after a restart.

Each worker has one supervising thread here that feeds it runs and relays its frames; torch
never runs in the server process or on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Any

from app.encoding import dumps
from app.runs import Run
from app.settings import Settings
from app.store import RunStore
from app.workers import Worker
from engine.core import Experiment, pick_device

log = logging.getLogger(__name__)

_POLL_S = 0.05
_WORKER_START_S = 120.0  # a worker that cannot import torch in this long is broken


class QueueFull(Exception):
    """No room in the queue; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the run queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RunManager:
    """Owns every run from ``submit`` to its stored record."""

    def __init__(self, settings: Settings, registry: dict[str, Experiment],
                 store: RunStore) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self._pending: deque[Run] = deque()
        self._active: dict[str, Run] = {}
        self._finished: OrderedDict[str, Run] = OrderedDict()
        self._cond = threading.Condition()
        self._closing = False
        self._workers: list[Worker] = []
        self._threads: list[threading.Thread] = []
        self.device = str(pick_device(settings.device))  # what the workers will run on

    # ----- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        count = self.settings.worker_count()
        self._workers = [Worker(self.settings.device, self.settings.extra_experiments)
                         for _ in range(count)]
        for index, worker in enumerate(self._workers):
            thread = threading.Thread(target=self._supervise, args=(worker,), daemon=True,
                                      name=f"run-supervisor-{index}")
            thread.start()
            self._threads.append(thread)
        janitor = threading.Thread(target=self._cancel_unwatched, daemon=True, name="run-janitor")
        janitor.start()
        self._threads.append(janitor)

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            runs = list(self._pending) + list(self._active.values())
            self._pending.clear()
            self._cond.notify_all()
        for run in runs:
            run.cancel_requested = True
        for worker in self._workers:
            worker.cancel.set()
        for thread in self._threads:
            thread.join(timeout=self.settings.stop_grace_s + 1)
        for worker in self._workers:
            worker.stop()
        for run in runs:
            self._finish(run, "cancelled")

    # ----- API used by the routes -----------------------------------------------------

    def submit(self, slug: str, params: dict[str, Any], query: dict[str, Any] | None = None,
               parent: str | None = None, artifact: bytes | None = None,
               uploads: dict[str, Any] | None = None) -> Run:
        """Queue a run of validated ``params`` (or a ``query`` on the finished run ``parent``,
        with its ``artifact``), handing it the ``uploads`` (id → pixels) its params name;
        raises QueueFull when no slot can take it."""
        experiment = self.registry[slug]
        model = experiment.Params.model_validate(params)
        if query is None:
            figures = experiment.figures(model)
        else:
            asked = experiment.Query.model_validate(query, context={"params": model})
            figures = experiment.query_figures(model, asked)
        with self._cond:
            idle = len(self._workers) - len(self._active)
            if len(self._pending) - max(idle, 0) >= self.settings.queue_size:
                raise QueueFull(self.settings.retry_after_s)
            run = Run(slug, params, figures, self.settings.event_log_bytes, query, parent)
            run.input_artifact = artifact
            run.input_uploads = uploads or {}
            self._pending.append(run)
            self._active[run.id] = run
            self._cond.notify()
        return run

    def artifact(self, run_id: str) -> bytes | None:
        """What a finished run left for queries (its trained weights, say), if anything."""
        run = self.get(run_id)
        if run is not None:
            return run.artifact if run.status == "done" else None
        return self.store.load_artifact(run_id)

    def get(self, run_id: str) -> Run | None:
        """A run still in memory (queued, running or recently finished)."""
        with self._cond:
            return self._active.get(run_id) or self._finished.get(run_id)

    def info(self, run_id: str) -> dict[str, Any] | None:
        """The run's record, from memory or the store; polling it keeps the run alive."""
        run = self.get(run_id)
        if run is not None:
            run.touch()
            return run.record()
        return self.store.load(run_id)

    def cancel(self, run_id: str) -> dict[str, Any] | None:
        run = self.get(run_id)
        if run is None:
            return self.store.load(run_id)
        run.cancel_requested = True
        with self._cond:
            queued = run in self._pending
            if queued:
                self._pending.remove(run)
        if queued:
            self._finish(run, "cancelled")
        return run.record()

    def health(self) -> dict[str, Any]:
        with self._cond:
            return {
                "status": "ok",
                "device": self.device,
                "workers": [{"pid": w.pid, "alive": w.alive()} for w in self._workers],
                "queued": len(self._pending),
                "running": len(self._active) - len(self._pending),
                "queue_size": self.settings.queue_size,
            }

    # ----- internals ------------------------------------------------------------------

    def _next_run(self) -> Run | None:
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            return None if self._closing else self._pending.popleft()

    def _finish(self, run: Run, status: str, error: str | None = None) -> None:
        run.finish(status, error)
        record = run.record()
        self.store.save(record, dumps(record))
        if run.artifact is not None and run.status == "done":
            self.store.save_artifact(run.id, run.artifact)
        # The parent run and the store keep these; no need to hold second copies.
        run.input_artifact = None
        run.input_uploads = {}
        with self._cond:
            self._active.pop(run.id, None)
            self._finished[run.id] = run
            while len(self._finished) > self.settings.finished_in_memory:
                self._finished.popitem(last=False)

    def _supervise(self, worker: Worker) -> None:
        while (run := self._next_run()) is not None:
            try:
                self._execute(worker, run)
            except Exception as exc:  # a bug here must not take the slot down with it
                log.exception("supervising run %s failed", run.id)
                self._finish(run, "error", f"internal error: {exc}")
                worker.replace()

    def _execute(self, worker: Worker, run: Run) -> None:
        if not worker.alive():
            worker.replace()
        worker.cancel.clear()
        worker.conn.send((run.id, run.experiment, run.params, run.query, run.input_artifact,
                          run.input_uploads))
        limit = self.settings.run_time_limit_s
        # The limit counts from "started": a freshly replaced worker first imports torch.
        deadline = time.monotonic() + max(limit, _WORKER_START_S)
        kill_at: float | None = None
        failure: str | None = None
        while True:
            # Limits are checked on every pass, also while frames pour in: a chatty run
            # must not be able to starve its own cancellation.
            if worker.conn.poll(_POLL_S):
                try:
                    kind, payload = worker.conn.recv()
                except (EOFError, OSError):
                    kind, payload = "died", None
                if kind == "started":
                    run.mark_running(payload)
                    deadline = time.monotonic() + limit
                elif kind == "frame":
                    run.publish_frame(payload)
                elif kind == "finished":
                    self._finish(run, "error" if failure else payload, failure)
                    return
                elif kind == "error":
                    self._finish(run, "error", failure or payload)
                    return
            if not worker.alive():
                code = worker.process.exitcode
                self._finish(run, "error", failure or (
                    f"the worker process running this run died (exit code {code}); "
                    "it has been replaced"))
                worker.replace()
                return
            now = time.monotonic()
            if failure is None and now > deadline:
                failure = f"the run exceeded its time limit of {limit:g} s and was stopped"
            if kill_at is None and (failure or run.cancel_requested):
                worker.cancel.set()
                kill_at = now + self.settings.stop_grace_s
            if kill_at is not None and now > kill_at:
                worker.replace()
                self._finish(run, "error", failure or "the run did not stop when cancelled")
                return

    def _cancel_unwatched(self) -> None:
        grace = self.settings.unwatched_grace_s
        while not self._closing:
            time.sleep(min(0.5, grace / 4))
            with self._cond:
                active = list(self._active.values())
            for run in active:
                if not run.cancel_requested and not run.watched(grace):
                    log.info("cancelling run %s: nobody watched it for %g s", run.id, grace)
                    self.cancel(run.id)
