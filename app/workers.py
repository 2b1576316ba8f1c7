"""Long-lived worker processes that execute runs, one at a time each.

The boundary is deliberately narrow, so a distributed backend can replace it later:
a run goes in as ``(run_id, slug, params, query, artifact, uploads)`` (query and artifact only
for a query on a finished run; uploads are the pixels of the pictures the params name),
frames come out as a stream of messages, and cancel goes in as a signal (a shared
``multiprocessing.Event``). Workers use ``spawn`` (safe with CUDA) and import torch
once, at start.

Messages from a worker: ``("started", device)``, ``("frame", frame_dict)``,
``("finished", "done" | "cancelled")``, ``("error", message)``.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_SPAWN = mp.get_context("spawn")


def _to_wire(value: Any) -> Any:
    """Plain Python and numpy only: tensors and figures must not cross the process boundary."""
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "to_plotly_json"):
        return _to_wire(value.to_plotly_json())
    return value


def frame_message(frame: Any) -> dict[str, Any]:
    """An engine Frame as the dict the server applies (see app.runs.Run.publish_frame)."""
    return {
        "figure": frame.figure,
        "op": frame.op,
        "update": _to_wire(frame.update) if frame.update is not None else None,
        "indices": list(frame.indices) if frame.indices is not None else None,
        "max_points": frame.max_points,
        "metrics": {k: (v.item() if isinstance(v, np.generic) else v)
                    for k, v in frame.metrics.items()},
        "progress": tuple(frame.progress) if frame.progress is not None else None,
        "checks": [c.as_dict() for c in frame.checks] if frame.checks is not None else None,
        "artifact": frame.artifact,
    }


def worker_main(conn: Connection, cancel: Any, device: str, extra: list[str]) -> None:
    """The worker process: receive runs, stream their frames back, until told to stop."""
    import torch

    from engine.core import RunContext, pick_device
    from engine.registry import load_registry

    torch.set_num_threads(1)  # one core per worker: the pool, not torch, spreads the load
    registry = load_registry(extra)
    torch_device = pick_device(device)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        run_id, slug, params, query, artifact, uploads = task
        try:
            experiment = registry[slug]
            model = experiment.Params.model_validate(params)
            ctx = RunContext(seed=model.seed, device=torch_device, should_stop=cancel.is_set,
                             uploads=uploads)
            if query is None:
                frames = experiment.run(model, ctx)
            else:
                asked = experiment.Query.model_validate(query, context={"params": model})
                frames = experiment.query(model, asked, artifact, ctx)
            conn.send(("started", str(torch_device)))
            for frame in frames:
                conn.send(("frame", frame_message(frame)))
                if cancel.is_set():
                    break
            conn.send(("finished", "cancelled" if cancel.is_set() else "done"))
        except Exception as exc:  # the run failed, the worker goes on
            log.error("run %s failed:\n%s", run_id, traceback.format_exc())
            message = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
                message = f"out of memory ({message}); try smaller parameters"
            conn.send(("error", message))
        finally:
            if torch_device.type == "cuda":
                torch.cuda.empty_cache()


class Worker:
    """The server's handle on one worker process."""

    def __init__(self, device: str, extra: list[str]) -> None:
        self._device, self._extra = device, extra
        self.process: Any = None
        self.conn: Connection | None = None
        self.cancel = _SPAWN.Event()
        self.start()

    def start(self) -> None:
        parent, child = _SPAWN.Pipe()
        self.cancel = _SPAWN.Event()
        self.process = _SPAWN.Process(
            target=worker_main, args=(child, self.cancel, self._device, self._extra),
            name="playground-worker", daemon=True,
        )
        self.process.start()
        child.close()
        self.conn = parent

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        if self.process is not None:
            self.process.join(timeout=5)
        if self.conn is not None:
            self.conn.close()

    def replace(self) -> None:
        """Kill this process (if still there) and start a fresh one."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Ask the process to exit after its current run; kill it if it does not."""
        try:
            if self.conn is not None:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        if self.process is not None:
            self.process.join(timeout=2)
        self.kill()
