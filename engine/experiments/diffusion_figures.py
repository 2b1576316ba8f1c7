"""The diffusion experiment's Plotly figures, their trace indices, and the scrubbing slider.

2-D data is drawn as point clouds on fixed axes (so the clicks of a drawn shape land where the
data will be, and an animation never rescales); digits as grids of 8×8 images. The slider over
the reverse process is Plotly's own: figure ``frames`` plus ``layout.sliders`` whose steps call
``animate``, so the browser scrubs without any code of ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from engine.experiments.diffusion_schedules import Schedule
from engine.experiments.toy_data import BOX, DIGITS_SIDE, parse_points

PATHS = 6  # individual samples whose paths x_T → x_0 are drawn
CLOUD_RANGE = [-4.0, 4.0]  # x_T ~ N(0, I) stays inside ±4 but for 1 point in 16,000
DATA_RANGE = [-BOX, BOX]
GRID_COLS = 8  # digits per row in an image grid
GAP = np.nan  # between the digits of a grid: drawn as background
INK = [[0.0, "#ffffff"], [1.0, "#111111"]]  # pixel -1 (paper) … +1 (ink)
COLORS = {"ddpm": "#1f77b4", "ddim": "#ff7f0e", "data": "#b0b0b0"}
PATH_COLORS = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

# Trace indices, shared by the figures and the run.
DATA_POINTS, DATA_DRAWN = range(2)  # 2-D "data"; digits: 0 is the image grid
SCHEDULE_ALPHA_BAR, SCHEDULE_BETA, SCHEDULE_BETA_TILDE = range(3)
LOSS_BLOCKS = 0
DDPM_DATA, DDPM_CLOUD = 0, 1
DDPM_PATHS = list(range(2, 2 + PATHS))
DDIM_DATA, DDIM_CLOUD = 2 + PATHS, 3 + PATHS
DDIM_PATHS = list(range(4 + PATHS, 4 + 2 * PATHS))
DDPM_GRID, DDIM_GRID = 0, 1  # digits "samples"


def forward_times(T: int) -> list[int]:
    """The times at which the forward process is shown and checked: 0, T/10, T/4, T/2, T."""
    return sorted({0, round(T / 10), round(T / 4), round(T / 2), T})


def digit_grid(x: np.ndarray, cols: int = GRID_COLS) -> np.ndarray:
    """Rows of 64 pixels → one image of 8×8 digits, ``cols`` per row, NaN gaps: (H, W) float32."""
    n = len(x)
    rows = max(1, -(-n // cols))
    side = DIGITS_SIDE + 1
    grid = np.full((rows * side - 1, cols * side - 1), GAP, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[r * side:r * side + DIGITS_SIDE, c * side:c * side + DIGITS_SIDE] = (
            np.asarray(x[k]).reshape(DIGITS_SIDE, DIGITS_SIDE)
        )
    return grid


def _image(z: Any = (), axis: str = "", name: str = "") -> go.Heatmap:
    return go.Heatmap(z=list(z), name=name, colorscale=INK, zmin=-1, zmax=1, showscale=False,
                      xaxis=f"x{axis}", yaxis=f"y{axis}", hoverinfo="skip")


def _image_axes(domain: Sequence[float], anchor: str) -> dict[str, Any]:
    return dict(domain=list(domain), anchor=anchor, showticklabels=False, showgrid=False,
                zeroline=False)


def _square(axis_range: list[float], **extra: Any) -> dict[str, Any]:
    return dict(range=axis_range, zeroline=False, **extra)


def _drawn_points(params: Any) -> np.ndarray:
    """The clicked points, when they parse (the run's validation reports any that do not)."""
    try:
        return parse_points(params.shape)
    except ValueError:
        return np.zeros((0, 2))


def data_figure(params: Any) -> go.Figure:
    """The training data; for 2-D, fixed axes on [-3, 3]² where clicks draw a shape."""
    if params.data == "digits":
        return go.Figure(
            [_image(name="training digits")],
            layout=dict(title="Training data: 8×8 digits in [−1, 1] (scikit-learn)",
                        xaxis=_image_axes([0, 1], "y"),
                        yaxis=dict(_image_axes([0, 1], "x"), autorange="reversed",
                                   scaleanchor="x")),
        )
    drawn = _drawn_points(params) if params.data == "drawn" else np.zeros((0, 2))
    return go.Figure(
        [
            go.Scatter(x=[], y=[], name="training data x₀", mode="markers",
                       marker=dict(size=3, color=COLORS["ddpm"], opacity=0.5)),
            go.Scatter(x=drawn[:, 0], y=drawn[:, 1], name="drawn points", mode="lines+markers",
                       line=dict(color="#d62728"), marker=dict(size=8)),
        ],
        layout=dict(
            title="Training data x₀ (data 'drawn': click here to add points)",
            # Fixed ranges: clicks must land where they are drawn, and a quick second click
            # must not be taken for Plotly's double-click that rescales the axes.
            xaxis=_square(DATA_RANGE, title="x₁", constrain="domain", fixedrange=True),
            yaxis=_square(DATA_RANGE, title="x₂", scaleanchor="x", constrain="domain",
                          fixedrange=True),
            margin=dict(t=60, b=50), height=460,
        ),
    )


def schedule_figure(schedule: Schedule) -> go.Figure:
    """ᾱ_t on the left axis; β_t and β̃_t on a log axis on the right; the shown times marked."""
    t = np.arange(schedule.T + 1, dtype=np.float64)
    shown = forward_times(schedule.T)
    return go.Figure(
        [
            go.Scatter(x=t, y=schedule.alpha_bar, name="ᾱ_t", mode="lines",
                       line=dict(color="#1f77b4", width=3)),
            go.Scatter(x=t[1:], y=schedule.beta[1:], name="β_t", mode="lines", yaxis="y2",
                       line=dict(color="#d62728")),
            go.Scatter(x=t[2:], y=schedule.beta_tilde[2:], name="β̃_t (posterior variance)",
                       mode="lines", yaxis="y2", line=dict(color="#2ca02c", dash="dash")),
        ],
        layout=dict(
            title=f"{schedule.name.capitalize()} schedule, T = {schedule.T}",
            xaxis=dict(title="t", range=[0, schedule.T]),
            yaxis=dict(title="ᾱ_t = ∏(1 − β_τ)", range=[0, 1.02]),
            yaxis2=dict(title="β_t, β̃_t", type="log", overlaying="y", side="right",
                        showgrid=False, dtick=1, tickformat=".0e"),
            shapes=[dict(type="line", x0=s, x1=s, y0=0, y1=1, yref="paper",
                         line=dict(dash="dot", color="#999999", width=1)) for s in shown],
            legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
        ),
    )


def forward_figure(params: Any, schedule: Schedule) -> go.Figure:
    """Samples x_t ~ q(x_t | x_0) of the forward chain at the shown times, one panel each."""
    shown = forward_times(schedule.T)
    title = "Forward process x_t = √(1−β_t) x_{t−1} + √β_t z, run step by step"
    if params.data == "digits":
        titles = [dict(text=f"t = {t}<br>ᾱ_t = {schedule.alpha_bar[t]:.3g}", showarrow=False,
                       xref="paper", yref="paper", x=(i + 0.5) / len(shown), y=1.0,
                       yanchor="bottom") for i, t in enumerate(shown)]
        return go.Figure(
            [_image(name="x_t")],
            layout=dict(title=title, xaxis=_image_axes([0, 1], "y"),
                        yaxis=dict(_image_axes([0, 1], "x"), autorange="reversed",
                                   scaleanchor="x"),
                        annotations=titles, height=420, margin=dict(t=110)),
        )
    traces, axes, titles = [], {}, []
    gap = 0.03
    width = (1 - gap * (len(shown) - 1)) / len(shown)
    for i, t in enumerate(shown):
        suffix = "" if i == 0 else str(i + 1)
        left = i * (width + gap)
        traces.append(go.Scatter(x=[], y=[], mode="markers", name=f"t = {t}",
                                 showlegend=False, xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                                 marker=dict(size=2, color=COLORS["ddpm"], opacity=0.5)))
        # constrain="domain": each panel shrinks to a square instead of widening its range
        axes[f"xaxis{suffix}"] = _square(CLOUD_RANGE, domain=[left, left + width],
                                         anchor=f"y{suffix}", showticklabels=False,
                                         constrain="domain")
        axes[f"yaxis{suffix}"] = _square(CLOUD_RANGE, anchor=f"x{suffix}",
                                         scaleanchor=f"x{suffix}", constrain="domain",
                                         constraintoward="top", showticklabels=i == 0)
        titles.append(dict(text=f"t = {t}<br>ᾱ_t = {schedule.alpha_bar[t]:.3g}",
                           showarrow=False, xref="paper", yref="paper", x=left + width / 2,
                           y=1.0, yanchor="bottom"))
    return go.Figure(traces, layout=dict(title=title, annotations=titles, height=280,
                                         margin=dict(t=100, b=20), **axes))


def loss_figure(params: Any) -> go.Figure:
    return go.Figure(
        [go.Scatter(x=[], y=[], name="‖ε − ε_θ(x_t, t)‖², block mean", mode="lines",
                    line=dict(color="#1f77b4"))],
        layout=dict(
            title="Training: the simplified criterion, t ~ U{1…T}, ε ~ N(0, I)",
            xaxis=dict(title="training step", range=[0, params.train_steps]),
            yaxis=dict(title="E‖ε − ε_θ‖²", type="log"),
        ),
    )


def samples_figure(params: Any, ddim_steps: int) -> go.Figure:
    """DDPM (left) and DDIM (right) samples side by side, as they leave the noise."""
    sigma2 = "β̃_t" if params.variance == "beta_tilde" else "β_t"
    ddpm_title = f"DDPM: {params.T} steps, σ_t² = {sigma2}"
    ddim_title = f"DDIM (η = 0): {ddim_steps} steps"
    titles = [dict(text=text, showarrow=False, xref="paper", yref="paper", x=x, y=1.0,
                   yanchor="bottom") for text, x in ((ddpm_title, 0.23), (ddim_title, 0.77))]
    title = "Reverse process x_{t−1} = m_θ(x_t, t) + σ_t z, from x_T ~ N(0, I)"
    if params.data != "digits":
        title += "<br><sup>grey: held-out data; lines: the paths of 6 samples</sup>"
    if params.data == "digits":
        return go.Figure(
            [_image(name="DDPM"), _image(axis="2", name="DDIM")],
            layout=dict(title=title, annotations=titles, margin=dict(t=100), height=540,
                        xaxis=_image_axes([0, 0.48], "y"),
                        yaxis=dict(_image_axes([0, 1], "x"), autorange="reversed",
                                   scaleanchor="x"),
                        xaxis2=_image_axes([0.52, 1], "y2"),
                        yaxis2=dict(_image_axes([0, 1], "x2"), autorange="reversed",
                                    scaleanchor="x2")),
        )
    traces = []
    for axis, key in (("", "ddpm"), ("2", "ddim")):
        traces.append(go.Scatter(x=[], y=[], name="held-out data", mode="markers",
                                 xaxis=f"x{axis}", yaxis=f"y{axis}",
                                 marker=dict(size=3, color=COLORS["data"], opacity=0.5)))
        traces.append(go.Scatter(x=[], y=[], name=f"{key.upper()} samples x_t", mode="markers",
                                 xaxis=f"x{axis}", yaxis=f"y{axis}",
                                 marker=dict(size=3, color=COLORS[key], opacity=0.6)))
        traces.extend(
            go.Scatter(x=[], y=[], name=f"path of sample {i + 1}", mode="lines",
                       xaxis=f"x{axis}", yaxis=f"y{axis}",
                       line=dict(color=PATH_COLORS[i], width=1))
            for i in range(PATHS)
        )
    return go.Figure(
        traces,
        layout=dict(
            title=title, annotations=titles, margin=dict(t=100), height=540,
            showlegend=False,
            xaxis=_square(CLOUD_RANGE, domain=[0, 0.47], anchor="y"),
            yaxis=_square(CLOUD_RANGE, anchor="x", scaleanchor="x"),
            xaxis2=_square(CLOUD_RANGE, domain=[0.53, 1], anchor="y2"),
            yaxis2=_square(CLOUD_RANGE, anchor="x2", scaleanchor="x2"),
        ),
    )


def quality_figure(params: Any, bars: dict[str, float] | None = None,
                   limits: Sequence[float] = ()) -> go.Figure:
    """The distance of each sample set to held-out data, and each check's pass line (dashed)."""
    digits = params.data == "digits"
    measure = ("mean nearest-neighbour distance to held-out digits, both ways" if digits
               else "energy distance to held-out data")
    bars = bars or {}
    colors = {"DDPM": COLORS["ddpm"], "DDIM": COLORS["ddim"], "Gaussian fit": "#9467bd",
              "held-out vs training": "#2ca02c"}
    limit_lines = [dict(type="line", x0=i - 0.45, x1=i + 0.45, y0=y, y1=y, xref="x", yref="y",
                        line=dict(color="#d62728", dash="dash", width=2))
                   for i, y in enumerate(limits)]
    return go.Figure(
        [go.Bar(x=list(bars), y=list(bars.values()), name=measure,
                marker=dict(color=[colors.get(k, "#7f7f7f") for k in bars]))],
        layout=dict(title=f"Sample quality: {measure}<br><sup>lower is better; dashed: the "
                          "check's limit</sup>",
                    yaxis=dict(title="NN distance", rangemode="tozero") if digits else
                    dict(title="energy distance", type="log", dtick=1, tickformat=".0e"),
                    shapes=limit_lines, margin=dict(t=80)),
    )


def with_slider(fig: go.Figure, labels: Sequence[str], frames: Sequence[list[dict]],
                traces: list[int], redraw: bool) -> go.Figure:
    """Add Plotly frames (one per label, each restyling ``traces``), a slider whose steps
    ``animate`` to them, and a replay button; the slider starts at the last frame."""
    names = [f"t = {label}" for label in labels]
    fig.frames = [go.Frame(name=name, data=data, traces=traces)
                  for name, data in zip(names, frames, strict=True)]
    jump = dict(mode="immediate", frame=dict(duration=0, redraw=redraw),
                transition=dict(duration=0))
    fig.update_layout(
        sliders=[dict(
            active=len(names) - 1, currentvalue=dict(prefix="t = "), pad=dict(t=40),
            x=0.1, len=0.9, y=0, yanchor="top",
            steps=[dict(label=label, method="animate", args=[[name], jump])
                   for label, name in zip(labels, names, strict=True)],
        )],
        updatemenus=[dict(
            type="buttons", showactive=False, x=0.1, y=0, xanchor="right", yanchor="top",
            pad=dict(t=60, r=10),
            buttons=[dict(label="▶", method="animate", args=[
                None, dict(mode="immediate", fromcurrent=False, transition=dict(duration=0),
                           frame=dict(duration=60, redraw=redraw))])],
        )],
    )
    return fig


def figures(params: Any, schedule: Schedule, ddim_steps: int) -> dict[str, go.Figure]:
    return {
        "data": data_figure(params),
        "schedule": schedule_figure(schedule),
        "forward": forward_figure(params, schedule),
        "loss": loss_figure(params),
        "samples": samples_figure(params, ddim_steps),
        "quality": quality_figure(params),
    }
