"""The server's copy of a run's figures, kept current by applying frames as Plotly.js would.

A late subscriber, a reconnect past the event log, ``GET /api/runs/{id}`` and the stored run
all read this state, so it must follow Plotly.js semantics for each op:

* ``extend``: ``update[attr][i]`` is appended to ``data[indices[i]][attr]``; with
  ``max_points`` only the last that many points are kept.
* ``restyle``: ``data[indices[i]][attr] = update[attr][i]`` (dotted attrs set nested keys).
* ``relayout``: ``layout[attr] = value`` (dotted attrs set nested keys).
* ``react``: the whole figure is replaced.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import numpy as np
import plotly.io as pio


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value


def _get_path(target: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(target, dict) or key not in target:
            return None
        target = target[key]
    return target


@cache
def default_template() -> dict[str, Any]:
    """plotly.py's default template, which every go.Figure carries unless told otherwise."""
    return pio.templates[pio.templates.default].to_plotly_json()


def normalise_figure(figure: Any) -> dict[str, Any]:
    """A plain ``{"data": [...], "layout": {...}}`` dict (plus ``"frames"`` when the figure
    has animation frames) from a go.Figure or a dict.

    The default template (~7 kB, the same in every figure) is left out; the browser puts it
    back from ``/vendor/plotly-template.json``. A figure's own template is kept.
    """
    if hasattr(figure, "to_plotly_json"):
        figure = figure.to_plotly_json()
    figure = copy.deepcopy(dict(figure))
    layout = dict(figure.get("layout", {}))
    if layout.get("template") == default_template():
        del layout["template"]
    normal = {"data": list(figure.get("data", [])), "layout": layout}
    if figure.get("frames"):  # animation frames (a slider's steps) travel with their figure
        normal["frames"] = list(figure["frames"])
    return normal


class FigureState:
    """Named Plotly figures that frames are applied to."""

    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = {name: normalise_figure(fig) for name, fig in figures.items()}

    def apply(self, figure: str, op: str, update: dict[str, Any], indices: list[int] | None,
              max_points: int | None = None) -> None:
        if op == "react":
            self.figures[figure] = normalise_figure(update)
            return
        if figure not in self.figures:
            raise KeyError(f"frame names unknown figure {figure!r}; known: {sorted(self.figures)}")
        target = self.figures[figure]
        if op == "relayout":
            for attr, value in update.items():
                _set_path(target["layout"], attr, value)
        elif op == "restyle":
            for attr, values in update.items():
                for i, index in enumerate(indices or []):
                    _set_path(target["data"][index], attr, values[i % len(values)])
        elif op == "extend":
            for attr, values in update.items():
                for i, index in enumerate(indices or []):
                    trace = target["data"][index]
                    old = _get_path(trace, attr)
                    if not isinstance(old, (list, tuple, np.ndarray)):
                        # Plotly.extendTraces refuses this too, so fail here, loudly.
                        raise ValueError(f"cannot extend missing or non-array attribute "
                                         f"{attr!r} of trace {index} in figure {figure!r}")
                    new = np.asarray(values[i])
                    joined = np.concatenate([np.asarray(old), new]) if len(old) else new
                    if max_points is not None:
                        joined = joined[-max_points:]
                    _set_path(trace, attr, joined)
        else:
            raise ValueError(f"op must be extend, restyle, relayout or react, got {op!r}")
