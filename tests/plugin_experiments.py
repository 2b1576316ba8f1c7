"""Experiments that misbehave on purpose, registered through PLAYGROUND_EXTRA_EXPERIMENTS.

They let the server tests exercise time limits, crashes, cancellation and slow consumers
without depending on how long a real experiment takes.
"""

from __future__ import annotations

import os
import time
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from engine.core import (
    Check,
    ClickInput,
    Experiment,
    Formula,
    Params,
    Section,
    extend,
    finish,
    pack_state,
    restyle,
    status,
    unpack_state,
)


class TickerParams(Params):
    steps: int = Field(20, ge=1, le=100_000, description="Frames to send.")
    delay_s: float = Field(0.0, ge=0, le=5, description="Sleep between frames.")
    points: int = Field(1, ge=1, le=100_000, description="Points per frame.")
    hang_s: float = Field(0.0, ge=0, le=600, description="Block this long after the first frame.")
    failure: Literal["none", "raise", "exit", "oom", "memory"] = Field(
        "none", description="How to fail midway: raise, exit the worker, or run out of memory "
        "(oom: a tensor larger than any device on ctx.device; memory: a Python allocation).")
    x0: float = Field(0.0, ge=-100, le=100, description="Set by clicking the chart.")
    y0: float = Field(0.0, ge=-100, le=100, description="Set by clicking the chart.")
    shape: str = Field("", max_length=200, description="Points added by clicking the chart.")


def ticker_figures(params: TickerParams) -> dict[str, go.Figure]:
    return {"ticks": go.Figure(go.Scatter(x=[], y=[], mode="lines"))}


def ticker_run(params: TickerParams, ctx):
    total = 0.0
    for step in range(params.steps):
        if ctx.should_stop():
            return
        if params.failure != "none" and step == params.steps // 2:
            if params.failure == "raise":
                raise RuntimeError("ticker failed on purpose")
            if params.failure == "oom":  # 1 PiB: the allocator itself refuses, CPU or CUDA
                torch.empty(1 << 50, dtype=torch.uint8, device=ctx.device)
            if params.failure == "memory":
                bytearray(1 << 50)
            os._exit(3)
        t = np.arange(step * params.points, (step + 1) * params.points, dtype=np.float64)
        y = t / 10.0 + (ctx.rng.standard_normal(params.points) if params.seed else 0.0)
        total += float(y.sum())
        yield extend("ticks", [0], x=[t], y=[y])
        yield status(progress=(step + 1, params.steps), step=step + 1)
        if params.hang_s and step == 0:
            time.sleep(params.hang_s)  # a stuck computation: no frames, no should_stop()
        if params.delay_s:
            time.sleep(params.delay_s)
    yield finish([Check("sum", r"\sum_t y_t", total, total, "=", True)],
                 artifact=pack_state({"total": torch.tensor(total, dtype=torch.float64)}),
                 total=total)


class TickerQuery(BaseModel):
    """Scale the finished run's total; ``step`` must be one the run made."""

    scale: float = Field(2.0, ge=-10, le=10, description="Factor applied to the run's total.")
    step: int = Field(0, ge=0, description="A step of the run, below its number of steps.")

    @field_validator("step")
    @classmethod
    def _within_run(cls, step: int, info: ValidationInfo) -> int:
        steps = info.context["params"].steps
        if step >= steps:
            raise ValueError(f"step must be below the run's {steps} steps, got {step}")
        return step


def ticker_query_figures(params: TickerParams, query: TickerQuery) -> dict[str, go.Figure]:
    return {"answer": go.Figure(go.Bar(x=["total", "scaled"], y=[0.0, 0.0]))}


def ticker_query(params: TickerParams, query: TickerQuery, artifact: bytes, ctx):
    total = float(unpack_state(artifact, ctx.device)["total"])
    yield restyle("answer", [0], y=[np.array([total, query.scale * total])])
    yield finish([Check("scaled", r"s \cdot \sum_t y_t", query.scale * total,
                        query.scale * total, "=", True)], scaled=query.scale * total)


ticker = Experiment(
    slug="ticker", title="Ticker (test)", section=Section("0", "Tests", chapter="0 Tests"),
    summary="Sends numbered frames; can sleep, hang or fail.",
    formulas=(Formula("line", r"y_t = t/10"),), Params=TickerParams,
    figures=ticker_figures, run=ticker_run,
    clicks=(ClickInput("ticks", x="x0", y="y0"), ClickInput("ticks", points="shape")),
    Query=TickerQuery, query_figures=ticker_query_figures, query=ticker_query,
)
