"""The experiment protocol: what every cheat-sheet experiment declares and yields.

An experiment is one module in ``engine/experiments/`` that builds an :class:`Experiment`:

* ``Params``: a pydantic model (subclass of :class:`Params`) whose fields all carry a default,
  bounds and a description; its JSON Schema drives the browser form and the OpenAPI docs.
* ``figures(params)``: the initial Plotly figures, by name.
* ``run(params, ctx)``: a generator of :class:`Frame` objects; the last one carries the
  :class:`Check` results (formula against measurement).

A :class:`Frame` maps one-to-one onto a Plotly.js call on one named figure:

=========  =======================================================================
op         Plotly.js call
=========  =======================================================================
extend     ``Plotly.extendTraces(div, update, indices, max_points)``
restyle    ``Plotly.restyle(div, update, indices)`` (one value per listed trace)
relayout   ``Plotly.relayout(div, update)`` (dotted keys such as ``"xaxis.range"``)
react      ``Plotly.react(div, figure.data, figure.layout)``
=========  =======================================================================

plus ``metrics`` (named numbers shown beside the charts) and ``progress`` (step, total).
Arrays in frames are numpy arrays (or lists); the transport decides how to encode them.

Nothing here knows about HTTP or JSON: experiments are plain generators that tests call.
"""

from __future__ import annotations

import io
import math
import operator
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

FrameOp = Literal["extend", "restyle", "relayout", "react"]
Metric = float | int | str


class Params(BaseModel):
    """Base of every experiment's parameters: unknown fields are errors, the seed is shared."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed; same seed, same run.")


@dataclass(frozen=True)
class Section:
    """A cheat-sheet section, e.g. ``Section("1.1", "Perceptron", chapter="1 History")``."""

    number: str
    name: str
    chapter: str


@dataclass(frozen=True)
class Formula:
    """One cheat-sheet item as LaTeX, already corrected per ERRATA.md (``erratum`` names it)."""

    label: str
    latex: str
    erratum: str | None = None


@dataclass(frozen=True)
class Check:
    """A formula or bound evaluated on the run that just happened.

    ``measured`` is what the run produced, ``reference`` what the formula predicts, and
    ``relation`` how they must compare (e.g. ``"<="`` for a bound, ``"≈"`` for a tolerance).
    For an inequality (``<=``, ``>=``, ``<``, ``>``) ``passed`` follows from the numbers and
    may be left out; other relations (a tolerance, several conditions) must say it.
    """

    name: str
    formula: str
    measured: float
    reference: float
    relation: str
    passed: bool | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.passed is None:
            if self.relation not in _INEQUALITIES:
                raise ValueError(f"check {self.name!r}: relation {self.relation!r} cannot "
                                 f"decide pass/fail; give passed= (or use one of "
                                 f"{sorted(_INEQUALITIES)})")
            holds = _INEQUALITIES[self.relation](float(self.measured), float(self.reference))
            object.__setattr__(self, "passed", bool(holds))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "formula": self.formula,
            "measured": _finite_or_none(self.measured),
            "reference": _finite_or_none(self.reference),
            "relation": self.relation,
            "passed": bool(self.passed),
            "detail": self.detail,
        }


_INEQUALITIES: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Frame:
    """One update to one named figure, plus optional metrics, progress and final checks."""

    figure: str | None = None
    op: FrameOp | None = None
    update: dict[str, Any] | None = None
    indices: list[int] | None = None
    max_points: int | None = None
    metrics: dict[str, Metric] = field(default_factory=dict)
    progress: tuple[int, int] | None = None
    checks: list[Check] | None = None
    artifact: bytes | None = None  # final frame only: what queries on this run receive


def extend(figure: str, indices: list[int], max_points: int | None = None, **arrays) -> Frame:
    """Append points to traces: ``extend("loss", [0], x=[[t]], y=[[h]])``."""
    return Frame(figure=figure, op="extend", update=arrays, indices=indices, max_points=max_points)


def restyle(figure: str, indices: list[int], **attrs) -> Frame:
    """Set trace attributes; each value is a list with one entry per index in ``indices``."""
    return Frame(figure=figure, op="restyle", update=attrs, indices=indices)


def relayout(figure: str, **attrs) -> Frame:
    """Set layout attributes; dotted keys go through a dict.

    ``relayout("loss", **{"yaxis.range": [0, 1]})``
    """
    return Frame(figure=figure, op="relayout", update=attrs)


def react(figure: str, fig: Any) -> Frame:
    """Replace a whole figure (a ``plotly.graph_objects.Figure`` or its dict)."""
    as_dict = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else dict(fig)
    return Frame(figure=figure, op="react", update=as_dict)


def status(progress: tuple[int, int] | None = None, **metrics: Metric) -> Frame:
    """A frame that only updates metrics and/or progress."""
    return Frame(metrics=metrics, progress=progress)


def finish(checks: list[Check], artifact: bytes | None = None, **metrics: Metric) -> Frame:
    """The final frame of a run: the checks, the last metrics and, for experiments that take
    queries, the artifact (e.g. trained weights from :func:`pack_state`) the queries need."""
    return Frame(metrics=metrics, checks=checks, artifact=artifact)


def pack_state(state: Mapping[str, Any]) -> bytes:
    """Tensors (a model's ``state_dict()``, plus plain values) as bytes for an artifact."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in state.items()},
               buffer)
    return buffer.getvalue()


def unpack_state(data: bytes, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Inverse of :func:`pack_state`; ``weights_only`` so an artifact can never run code."""
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


class RunContext:
    """What a run gets from whoever executes it: a device, seeded randomness, a stop signal.

    ``generator`` is a ``torch.Generator`` on ``device`` seeded with ``seed``; ``rng`` a numpy
    ``Generator`` seeded the same way, for the few places that need numpy (e.g. scipy).
    ``uploads`` maps the upload ids named in the params to their pixels (8-bit gray arrays),
    resolved by the executor so that experiments never touch storage (see engine.images).
    """

    def __init__(
        self,
        seed: int = 0,
        device: torch.device | str | None = None,
        should_stop: Callable[[], bool] | None = None,
        uploads: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.seed = seed
        self.uploads: Mapping[str, np.ndarray] = uploads or {}
        self.device = torch.device(device) if device is not None else pick_device()
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self._should_stop = should_stop or (lambda: False)

    def should_stop(self) -> bool:
        """True once the run was cancelled or ran out of time; experiments return promptly."""
        return self._should_stop()


def pick_device(preference: str | None = None) -> torch.device:
    """CUDA when present, else CPU; ``preference`` (or ``PLAYGROUND_DEVICE``) can force one."""
    preference = (preference or os.environ.get("PLAYGROUND_DEVICE", "auto")).lower()
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available")
    if preference != "cpu" and not preference.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {preference!r}")
    return torch.device(preference)


@dataclass(frozen=True)
class ClickInput:
    """Clicking figure ``figure`` in the browser writes the clicked data coordinates into params.

    Either ``x`` and ``y`` name two number fields that are *set* to the click (a start point),
    or ``points`` names a string field that the click is *appended* to as ``"x,y"``, points
    separated by ``;`` (a shape drawn point by point). Anything clicked is still validated by
    the Params model when the run starts.
    """

    figure: str
    x: str | None = None
    y: str | None = None
    points: str | None = None

    def __post_init__(self) -> None:
        if (self.points is None) == (self.x is None or self.y is None):
            raise ValueError("ClickInput takes either x and y, or points")


@dataclass(frozen=True)
class Experiment:
    """Everything the app needs to list, describe, validate and run one experiment."""

    slug: str
    title: str
    section: Section
    summary: str
    formulas: tuple[Formula, ...]
    Params: type[Params]
    figures: Callable[[Any], Mapping[str, Any]]
    run: Callable[[Any, RunContext], Iterator[Frame]]
    clicks: tuple[ClickInput, ...] = ()
    # Queries on a finished run (e.g. inference with the model it trained). ``Query`` is a
    # pydantic model validated with ``context={"params": <the run's Params instance>}``, so its
    # validators can check a query against what was trained; ``query_figures(params, query)``
    # gives the initial figures and ``query(params, query, artifact, ctx)`` yields frames,
    # ``artifact`` being the bytes the run's final frame carried.
    Query: type[BaseModel] | None = None
    query_figures: Callable[[Any, Any], Mapping[str, Any]] | None = None
    query: Callable[[Any, Any, bytes, RunContext], Iterator[Frame]] | None = None
    # Images a finished run offers for download: names of 8-bit arrays in the ``.npz`` its
    # final frame's artifact carries (see engine.images.pack_images), served as PNG files.
    downloads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = (self.Query, self.query_figures, self.query)
        if any(p is not None for p in parts) and not all(p is not None for p in parts):
            raise ValueError(f"{self.slug}: Query, query_figures and query go together")


def click_inputs(experiment: Experiment) -> list[dict[str, str | None]]:
    """The experiment's click bindings as plain dicts (for the page and the API)."""
    return [asdict(click) for click in experiment.clicks]


def run_to_end(experiment: Experiment, params: Params,
               ctx: RunContext | None = None) -> list[Frame]:
    """Run an experiment in-process and collect its frames (tests, benchmarks, notebooks)."""
    ctx = ctx or RunContext(seed=params.seed)
    return list(experiment.run(params, ctx))


def checks_of(frames: list[Frame]) -> dict[str, Check]:
    """The final checks of a collected run, by name."""
    final = [f for f in frames if f.checks is not None]
    if not final:
        raise ValueError("the run ended without a final frame carrying checks")
    return {c.name: c for c in final[-1].checks}
