r"""1.10.3 Denoising diffusion: train ε_θ with the simplified criterion, then sample, live.

The cheat sheet, corrected per ERRATA.md (A-1.10.3-11, G-1.10.3-12, A-1.10.3-13; the math is
in :mod:`engine.experiments.diffusion_schedules`):

* forward :math:`x_t \mid x_0 \sim \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t)I)`;
* the final simplified criterion

  .. math:: h(\theta) = \frac1T\sum_{t=1}^T \mathbb E\,\big\|\varepsilon -
            \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x + \sqrt{1-\bar\alpha_t}\,\varepsilon,
            t\big)\big\|^2 ,

  minimised by Adam on mini-batches with t ~ U{1…T} (the Monte-Carlo form of (1/T)Σ_t);
* the reverse process :math:`x_{t-1} = m_\theta(x_t, t) + \sigma_t z`,
  :math:`m_\theta = \frac1{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}
  \varepsilon_\theta(x_t, t)\big)`, :math:`\sigma_t^2 \in \{\beta_t, \tilde\beta_t\}`, and for
  comparison DDIM's deterministic sampler (η = 0) on a subsequence of the times.

References: Ho, Jain & Abbeel (2020), Algorithms 1 and 2; Song, Meng & Ermon, DDIM (2021);
Székely & Rizzo (2013) for the energy distance.

The run shows the schedule and the forward chain (first frames, before any training), streams
the loss while ε_θ (a small residual MLP with a sinusoidal time embedding) trains, then
streams both samplers' clouds (2-D) or image grids (digits) from t = T to 0 and leaves a
slider to scrub back through them. All samples move in one batched tensor op per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from scipy.stats import norm
from torch import nn

from engine.core import (
    Check,
    ClickInput,
    Experiment,
    Formula,
    Frame,
    Params,
    RunContext,
    Section,
    extend,
    finish,
    react,
    restyle,
)
from engine.experiments import diffusion_figures as figs
from engine.experiments.diffusion_schedules import (
    Schedule,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    forward_step,
    make_schedule,
    posterior_by_conditioning,
    posterior_mean,
    posterior_mean_eps,
    q_sample,
)
from engine.experiments.toy_data import digits, parse_points, toy

TRAIN_POINTS = 20_000  # a 2-D toy's training set
HELD_OUT = {"2d": 2_000, "digits": 400}  # held-out data the samples are compared with
# What the browser draws is bounded: each point is an SVG element, and a redraw of a few
# thousand costs the browser ~0.1 s on a laptop core, more without a GPU.
SHOWN_POINTS = 1_000  # points per cloud in a frame (streamed, stored for the slider, final)
HELD_SHOWN = 500  # held-out points drawn under each sample cloud
SLIDER_FRAMES = 30  # stored frames for the slider, per run
SHOWN_DIGITS = 64  # digits in a grid (8 × 8)
FORWARD_SHOWN = 500  # points per forward-process panel (2-D)
FORWARD_CHAINS = {"2d": 10_000, "digits": 2_000}  # chains for the forward and x_T checks
LOSS_POINTS = 1_000  # block means of the loss drawn, at most
LOSS_FRAMES = 100  # loss frames, at most
SAMPLE_FRAMES = {"ddpm": 30, "ddim": 15}  # streamed frames per sampler, at most
TIME_EMBEDDING = 32
K_SE = 4.0  # CHECKS.md: statistical checks within 4·SE ...
FAMILY_RISK = 1e-3  # ... or the Bonferroni k for this family-wise risk, if larger
EXACT_TOL = 1e-10
MARGIN = {"2d": 0.5, "digits": 0.75}  # quality: model ≤ margin × the better baseline


class DiffusionParams(Params):
    """The data, the schedule, the network, its training, and the two samplers."""

    data: Literal["swiss_roll", "moons", "gaussians", "ring", "drawn", "digits"] = Field(
        "swiss_roll",
        description="What to learn: a 2-D toy, a shape drawn by clicking the data chart "
        "('drawn', see shape), or scikit-learn's 8×8 digits (64 dimensions).",
    )
    shape: str = Field(
        "",
        max_length=2000,
        description="The drawn shape for data 'drawn': points 'x,y;x,y;…' in [-3, 3]², added by "
        "clicking the data chart; the data lie along the line through them.",
        validate_default=True,
    )
    schedule: Literal["linear", "cosine"] = Field(
        "linear",
        description="Noise schedule: β_t linear from 0.1/T to 20/T (Ho et al.'s 1e-4…0.02 at "
        "T = 1000), or Nichol & Dhariwal's cosine ᾱ_t.",
    )
    T: int = Field(200, ge=50, le=1000, description="Number of diffusion steps T.")
    width: int = Field(128, ge=16, le=256, description="Hidden width of the network ε_θ.")
    depth: int = Field(3, ge=1, le=4, description="Residual blocks of the network ε_θ.")
    train_steps: int = Field(3000, ge=100, le=10_000, description="Adam steps of training.")
    batch_size: int = Field(256, ge=16, le=512, description="Training mini-batch size.")
    lr: float = Field(5e-3, ge=1e-4, le=1e-2, description="Adam learning rate (constant, then "
                      "down to 0 linearly over the second half of training).")
    variance: Literal["beta", "beta_tilde"] = Field(
        "beta", description="Reverse-process variance σ_t²: β_t or β̃_t.")
    samples: int = Field(2000, ge=100, le=10_000,
                         description="Samples drawn by each sampler, all in one batch "
                         "(the charts show 1,000 of them).")
    ddim_steps: int = Field(50, ge=2, le=1000,
                            description="Steps of the deterministic DDIM sampler (at most T).")
    clip_x0: bool = Field(
        True,
        description="Clip the predicted x̂₀ to the data's range (digits: [−1, 1]; 2-D: the "
        "training data's box, widened by 10 %) before each reverse step, as Ho et al. do for "
        "images. Off: the pure ε-form m_θ.",
    )

    @field_validator("shape")
    @classmethod
    def _shape_parses(cls, shape: str, info: ValidationInfo) -> str:
        points = parse_points(shape)  # a ValueError names the bad point
        if info.data.get("data") == "drawn":
            if len(points) < 2:
                raise ValueError(f"data 'drawn' needs at least 2 points in shape (click the "
                                 f"data chart), got {len(points)}")
            if not np.any(np.abs(np.diff(points, axis=0)) > 0):
                raise ValueError("the points of shape all coincide; draw a line with length")
        return shape

    @field_validator("ddim_steps")
    @classmethod
    def _ddim_within_T(cls, steps: int, info: ValidationInfo) -> int:
        T = info.data.get("T")
        if T is not None and steps > T:
            raise ValueError(f"ddim_steps must be at most T = {T}, got {steps}")
        return steps


# ----------------------------------------------------------------------------------------------
# The network ε_θ(x_t, t).


class EpsilonNet(nn.Module):
    """An MLP with ``depth`` residual blocks. t enters every block: its sinusoidal embedding
    (t scaled to 0…1000 whatever T, as in Ho et al.), mapped once to the width, is added to
    the input of each block, which costs additions, not matrix products."""

    def __init__(self, d: int, width: int, depth: int, T: int) -> None:
        super().__init__()
        self.T = T
        self.inp = nn.Linear(d, width)
        self.time = nn.Linear(TIME_EMBEDDING, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, d)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) or (1,) integer times → (B, width)."""
        half = TIME_EMBEDDING // 2
        k = torch.arange(half, device=t.device, dtype=torch.float32)
        angle = (t.float() * (1000.0 / self.T))[:, None] * torch.exp(-math.log(1e4) * k / half)
        return self.time(torch.cat([angle.sin(), angle.cos()], dim=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, d), t (B,) or (1,) when every sample is at the same time: ε̂ (B, d)."""
        e = self.embed(t)  # (B or 1, width)
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(F.silu(h + e))
        return self.out(F.silu(h))


def make_net(d: int, params: DiffusionParams, ctx: RunContext) -> EpsilonNet:
    """A fresh ε_θ on ctx.device, initialised from ctx.generator (PyTorch's default ranges,
    U(±1/√fan_in)), so the same seed gives the same network on the same device."""
    with torch.device("meta"):
        net = EpsilonNet(d, params.width, params.depth, params.T)
    net = net.to_empty(device=ctx.device)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=ctx.generator)
                module.bias.uniform_(-bound, bound, generator=ctx.generator)
    return net


# ----------------------------------------------------------------------------------------------
# Samplers: one batched network call per step for all samples.

Clip = tuple[torch.Tensor, torch.Tensor] | None


@torch.no_grad()
def ddpm_sample(net: EpsilonNet, x_T: torch.Tensor, s: Schedule, sigma2: np.ndarray,
                generator: torch.Generator, clip: Clip = None
                ) -> Iterator[tuple[int, torch.Tensor]]:
    """Ancestral sampling: yields (T, x_T), then (t − 1, x_{t−1}) after each step down to 0."""
    x = x_T
    yield s.T, x
    for t in range(s.T, 0, -1):
        eps = net(x, torch.full((1,), t, device=x.device))
        z = torch.randn(x.shape, generator=generator, device=x.device) if t > 1 else None
        x = ddpm_step(x, eps, t, s, sigma2, z, clip)
        yield t - 1, x


@torch.no_grad()
def ddim_sample(net: EpsilonNet, x_T: torch.Tensor, s: Schedule, steps: int,
                clip: Clip = None) -> Iterator[tuple[int, torch.Tensor]]:
    """DDIM with η = 0 on ``steps`` times T = τ_S > … > τ_1, then t = 0: yields (τ, x_τ)."""
    times = ddim_timesteps(s.T, steps) + [0]
    x = x_T
    yield times[0], x
    for t, t_prev in zip(times[:-1], times[1:], strict=True):
        eps = net(x, torch.full((1,), t, device=x.device))
        x = ddim_step(x, eps, t, t_prev, s, clip)
        yield t_prev, x


def train_step(net: EpsilonNet, optimiser: torch.optim.Optimizer, x0: torch.Tensor,
               sqrt_ab: torch.Tensor, sqrt_1m_ab: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
    r"""One step on :math:`\|\varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}x_0 +
    \sqrt{1-\bar\alpha_t}\varepsilon, t)\|^2`, t ~ U{1…T}; returns the batch loss (detached)."""
    B, T = len(x0), len(sqrt_ab) - 1
    t = torch.randint(1, T + 1, (B,), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    x_t = sqrt_ab[t, None] * x0 + sqrt_1m_ab[t, None] * eps  # (B, d)
    loss = (eps - net(x_t, t)).square().sum(dim=1).mean()
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss.detach()


# ----------------------------------------------------------------------------------------------
# Sample quality.


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Székely's energy distance :math:`2\mathbb E\|X-Y\| - \mathbb E\|X-X'\| -
    \mathbb E\|Y-Y'\|`, each within-set mean over distinct pairs (U-statistics, unbiased)."""
    x, y = x.double(), y.double()
    n, m = len(x), len(y)
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (n * (n - 1))
    yy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * xy - xx - yy)


def nn_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean distance from each sample to its nearest held-out point and back, halved (a
    symmetric Chamfer distance): off-manifold noise raises the first, lost modes the second."""
    d = torch.cdist(x.double(), y.double())
    return float(0.5 * (d.min(dim=1).values.mean() + d.min(dim=0).values.mean()))


# ----------------------------------------------------------------------------------------------
# The run.

FORMULAS = (
    Formula("Forward process", r"x_t \mid x_{t-1} \sim \mathcal N\big(\sqrt{1-\beta_t}\,x_{t-1},"
            r"\ \beta_t I\big),\quad \alpha_t := 1-\beta_t,\quad \bar\alpha_t = "
            r"\prod_{\tau=1}^t \alpha_\tau", erratum="A-1.10.3-13"),
    Formula("Forward marginal (exact for every t)",
            r"x_t \mid x_0 \sim \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big)",
            erratum="A-1.10.3-11"),
    Formula("Forward-trajectory target",
            r"m(x_t,x_0,t) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0 + "
            r"\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\quad "
            r"\tilde\beta_t = \frac{(1-\bar\alpha_{t-1})\,\beta_t}{1-\bar\alpha_t}",
            erratum="G-1.10.3-12"),
    Formula("ε-parameterisation",
            r"m = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}"
            r"\,\varepsilon\Big),\quad x_t = \sqrt{\bar\alpha_t}\,x_0 + "
            r"\sqrt{1-\bar\alpha_t}\,\varepsilon", erratum="A-1.10.3-13"),
    Formula("Final simplified criterion",
            r"h(\theta) = \frac{1}{T}\sum_{t=1}^{T}\mathbb E\Big[\big\|\varepsilon - "
            r"\varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x + \sqrt{1-\bar\alpha_t}\,"
            r"\varepsilon,\ t\big)\big\|^2\Big]"),
    Formula("Reverse process",
            r"x_{t-1} = m_\theta(x_t,t) + \sigma_t z,\quad z \sim \mathcal N(0,I),\quad "
            r"\sigma_t^2 \in \{\beta_t, \tilde\beta_t\}"),
    Formula("DDIM (η = 0)",
            r"x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}}\,"
            r"\varepsilon_\theta(x_t,t),\quad \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,"
            r"\varepsilon_\theta(x_t,t)}{\sqrt{\bar\alpha_t}}"),
)


def figures(params: DiffusionParams) -> dict[str, Any]:
    """The schedule curves are drawn up front; every other chart fills in during the run."""
    schedule = make_schedule(params.schedule, params.T)
    return figs.figures(params, schedule, len(ddim_timesteps(params.T, params.ddim_steps)))


def _kind(params: DiffusionParams) -> str:
    return "digits" if params.data == "digits" else "2d"


def _with_status(frame: Frame, progress: tuple[int, int] | None = None, **metrics) -> Frame:
    frame.progress = progress
    frame.metrics = metrics
    return frame


def _data(params: DiffusionParams, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) data, float32 on ctx.device."""
    g = ctx.generator
    if params.data == "digits":
        x = torch.as_tensor(digits(), dtype=torch.float32, device=ctx.device)
        order = torch.randperm(len(x), generator=g, device=ctx.device)
        held = HELD_OUT["digits"]
        return x[order[held:]], x[order[:held]]
    train = toy(params.data, TRAIN_POINTS, g, params.shape)
    held = toy(params.data, HELD_OUT["2d"], g, params.shape)
    return train.float(), held.float()


def _clip_box(params: DiffusionParams, train: torch.Tensor) -> Clip:
    if not params.clip_x0:
        return None
    if params.data == "digits":
        return (torch.full_like(train[0], -1.0), torch.full_like(train[0], 1.0))
    lo, hi = train.min(dim=0).values, train.max(dim=0).values
    return lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _cloud(x: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n points of a cloud as float32 x and y arrays (the samples are exchangeable)."""
    xy = _np(x[:n]).astype(np.float32)
    return xy[:, 0].copy(), xy[:, 1].copy()


def _grid(x: torch.Tensor) -> np.ndarray:
    return figs.digit_grid(_np(x[:SHOWN_DIGITS]))


def _k(comparisons: int) -> float:
    """4, or the Bonferroni multiplier that keeps a family of this size at FAMILY_RISK."""
    return max(K_SE, float(norm.isf(FAMILY_RISK / (2 * comparisons))))


def _forward_chain(train: torch.Tensor, s: Schedule, ctx: RunContext, kind: str
                   ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], torch.Tensor]:
    """Run x_t = √(1−β_t) x_{t−1} + √β_t z step by step (float64) for N data points and for
    N copies of one data point x₀. Returns the shown clouds by t, the copies by t, and x₀."""
    g = ctx.generator
    n = FORWARD_CHAINS[kind]
    pick = torch.randint(0, len(train), (n,), generator=g, device=ctx.device)
    x0_cloud = train[pick].double()  # (N, d), varied x₀: for x_T ≈ N(0, I)
    x0 = train[pick[0]].double()  # (d,): one x₀ for the marginal x_t | x₀
    x = torch.cat([x0_cloud, x0.expand(n, -1)])  # (2N, d)
    shown = figs.forward_times(s.T)
    clouds, copies = {0: x0_cloud}, {0: x[n:]}
    for t in range(1, s.T + 1):
        x = forward_step(x, t, s, torch.randn(x.shape, generator=g, device=x.device,
                                              dtype=torch.float64))
        if t in shown:
            clouds[t], copies[t] = x[:n], x[n:]
    return clouds, copies, x0


def _forward_check(copies: dict[int, torch.Tensor], x0: torch.Tensor, s: Schedule) -> Check:
    r"""Mean and variance of x_t | x₀ from the chain against √ᾱ_t x₀ and 1 − ᾱ_t, per dim."""
    rows = []  # (|z|, t, what, measured, reference, se)
    for t, x in copies.items():
        if t == 0:
            continue
        n = len(x)
        mean, var = x.mean(dim=0), x.var(dim=0)
        m4 = ((x - mean) ** 4).mean(dim=0)
        se_mean, se_var = (var / n).sqrt(), ((m4 - var**2) / n).sqrt()
        ref_mean, ref_var = math.sqrt(s.alpha_bar[t]) * x0, 1.0 - s.alpha_bar[t]
        for i in range(len(x0)):
            rows.append((abs(float(mean[i] - ref_mean[i])) / float(se_mean[i]), t, f"mean[{i}]",
                         float(mean[i]), float(ref_mean[i]), float(se_mean[i])))
            rows.append((abs(float(var[i]) - ref_var) / float(se_var[i]), t, f"var[{i}]",
                         float(var[i]), ref_var, float(se_var[i])))
    k = _k(len(rows))
    z, t, what, measured, reference, se = max(rows)
    n = len(next(iter(copies.values())))
    return Check(
        name="Forward marginal x_t | x₀",
        formula=r"\overline{x_t} \approx \sqrt{\bar\alpha_t}\,x_0,\ \ \widehat{\mathrm{Var}}"
                r"(x_t) \approx 1-\bar\alpha_t\ \ (\le k\cdot\mathrm{SE})",
        measured=measured, reference=reference, relation="≈", passed=z <= k,
        detail=f"{n:,} chains from one x₀ run step by step x_t = √(1−β_t)x_{{t−1}} + √β_t z "
        f"(float64), compared at t ∈ {sorted(t_ for t_ in copies if t_)} in every dimension: "
        f"{len(rows)} means and variances. Worst: {what} at t = {t}, |z| = {z:.2f} "
        f"(SE {se:.2g}); limit k = {k:.2f} (4, or Bonferroni for a family-wise risk of "
        f"{FAMILY_RISK:g}). SE of a variance from the sample's fourth moment.",
    )


def _x_T_check(cloud_T: torch.Tensor, x0_cloud: torch.Tensor, s: Schedule) -> Check:
    """x_T of chains from varied data points against N(0, I): means, variances (2-D: also the
    covariance), within k·SE plus what ᾱ_T > 0 leaves of the data (exact, tiny)."""
    x, n, d = cloud_T, len(cloud_T), cloud_T.shape[1]
    a_T = float(s.alpha_bar[-1])
    mean, var = x.mean(dim=0), x.var(dim=0)
    centred = x - mean
    m4 = (centred**4).mean(dim=0)
    # What N(0, I) misses of x_T: E x_T = √ᾱ_T E x₀, Var x_T = 1 − ᾱ_T + ᾱ_T Var x₀.
    resid_mean = math.sqrt(a_T) * x0_cloud.mean(dim=0).abs()
    resid_var = a_T * (x0_cloud.var(dim=0) - 1.0).abs()
    rows = []  # (deviation / tolerance, what, measured, reference, tolerance)
    for i in range(d):
        tol = K_SE * float((var[i] / n).sqrt()) + float(resid_mean[i])
        rows.append((abs(float(mean[i])) / tol, f"mean[{i}]", float(mean[i]), 0.0, tol))
        tol = K_SE * float(((m4[i] - var[i] ** 2) / n).sqrt()) + float(resid_var[i])
        rows.append((abs(float(var[i]) - 1) / tol, f"var[{i}]", float(var[i]), 1.0, tol))
    if d == 2:
        cov = float((centred[:, 0] * centred[:, 1]).mean())
        se = float((centred[:, 0] * centred[:, 1]).std() / math.sqrt(n))
        tol = K_SE * se + a_T * abs(float(torch.cov(x0_cloud.T)[0, 1]))
        rows.append((abs(cov) / tol, "cov[0,1]", cov, 0.0, tol))
    k_scale = _k(len(rows)) / K_SE  # widen 4·SE to the Bonferroni k for many dimensions
    ratio, what, measured, reference, tol = max(rows)
    return Check(
        name="x_T ≈ N(0, I)",
        formula=r"\overline{x_T} \approx 0,\ \ \widehat{\mathrm{Cov}}(x_T) \approx I",
        measured=measured, reference=reference, relation="≈", passed=ratio <= k_scale,
        detail=f"{n:,} forward chains from data points, at t = T = {s.T} (ᾱ_T = {a_T:.2g}): "
        f"{len(rows)} moments. Worst: {what} = {measured:.4f} vs {reference:g}, off by "
        f"{ratio / k_scale:.2f} of its tolerance k·SE + √ᾱ_T|x̄₀| (mean) or "
        f"ᾱ_T|Var x₀ − 1| (variance, what ᾱ_T > 0 leaves of the data), k = "
        f"{K_SE * k_scale:.2f}.",
    )


def _posterior_check(train: torch.Tensor, s: Schedule, ctx: RunContext) -> Check:
    """m and β̃ in closed form against the ε-form and against Gaussian conditioning, every t."""
    T = s.T
    t = np.arange(1, T + 1)
    pick = torch.randint(0, len(train), (T,), generator=ctx.generator, device=ctx.device)
    x0 = _np(train[pick]).astype(np.float64)  # (T, d), one x₀ per t
    eps = _np(torch.randn(x0.shape, generator=ctx.generator, device=ctx.device,
                          dtype=torch.float64))
    x_t = q_sample(x0, t, s, eps)
    m = posterior_mean(x_t, x0, t, s)
    m_eps = posterior_mean_eps(x_t, eps, t, s)
    m_cond, var_cond = posterior_by_conditioning(x_t, x0, t, s)
    beta_tilde = s.beta_tilde[1:]
    errors = {"|m − m_ε|": np.abs(m - m_eps).max(), "|m − m_cond|": np.abs(m - m_cond).max(),
              "|β̃ − Var_cond|": np.abs(beta_tilde - var_cond[:, 0]).max()}
    worst = max(errors.values())
    # What the transcribed formulas would give (ERRATA G-1.10.3-12), for the record.
    ab_prev = np.concatenate([[1.0], s.alpha_bar[:-1]])[1:]
    sheet_c0 = np.sqrt(ab_prev * s.beta[1:]) / (1 - s.alpha_bar[1:])
    sheet_beta_tilde = (1 - ab_prev * s.beta[1:]) / (1 - s.alpha_bar[1:])
    c0 = np.sqrt(ab_prev) * s.beta[1:] / (1 - s.alpha_bar[1:])
    return Check(
        name="Posterior mean and β̃_t: closed form = ε-form",
        formula=r"\max_t \big|m(x_t,x_0,t) - \tfrac{1}{\sqrt{\alpha_t}}(x_t - "
                r"\tfrac{\beta_t}{\sqrt{1-\bar\alpha_t}}\varepsilon)\big| \le 10^{-10}",
        measured=float(worst), reference=0.0, relation="≈", passed=bool(worst <= EXACT_TOL),
        detail="every t = 1…T, x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε in float64, one data point and ε "
        "per t; also against conditioning the joint Gaussian of (x_{t−1}, x_t) | x₀: "
        + ", ".join(f"{k} = {v:.1e}" for k, v in errors.items())
        + f"; tolerance {EXACT_TOL:g}. The sheet's √(ᾱ_{{t−1}}β_t) coefficient is off by up to "
        f"{np.abs(sheet_c0 - c0).max():.3g} and its β̃_t by up to "
        f"{np.abs(sheet_beta_tilde - beta_tilde).max():.3g}.",
    )


def _quality_check(name: str, kind: str, values: dict[str, float]) -> Check:
    """The trained model's samples against its untrained self and a Gaussian fit of the data."""
    margin = MARGIN[kind]
    baseline = min(values["untrained"], values["Gaussian fit"])
    if kind == "2d":
        reference = margin * baseline
        formula = (r"\mathcal E(\text{samples}, \text{held-out}) \le "
                   rf"{margin:g}\,\min(\mathcal E_{{\text{{init}}}}, "
                   r"\mathcal E_{\text{Gauss}})")
        measure = "energy distance ℰ to held-out data"
        rule = f"at most {margin:g} × the better of the two"
    else:
        floor = values["data floor"]
        reference = floor + margin * (baseline - floor)
        formula = (r"d_{\text{NN}} - d_{\text{NN}}^{\text{data}} \le "
                   rf"{margin:g}\,\big(\min(d_{{\text{{init}}}}, d_{{\text{{Gauss}}}}) - "
                   r"d_{\text{NN}}^{\text{data}}\big)")
        measure = "mean nearest-neighbour distance to held-out digits, both ways"
        rule = (f"its excess over real digits' {floor:.3f} at most {margin:g} × the better "
                "baseline's")
    model = values[name]
    return Check(
        name=f"{name} samples beat the untrained model and a Gaussian fit",
        formula=formula, measured=model, reference=reference, relation="<=",
        detail=f"{measure}: {name} {model:.4g}, untrained model {values['untrained']:.4g}, "
        f"Gaussian fit (mean and covariance of the training data) "
        f"{values['Gaussian fit']:.4g}; {rule}. Held-out data against training data: "
        f"{values['data floor']:.4g}.",
    )


def _gaussian_fit(train: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    x = train.double()
    cov = torch.cov(x.T) + 1e-6 * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    z = torch.randn(n, x.shape[1], generator=g, device=x.device, dtype=x.dtype)
    return (x.mean(dim=0) + z @ torch.linalg.cholesky(cov).T).float()


def run(params: DiffusionParams, ctx: RunContext) -> Iterator[Frame]:
    """Schedule and forward process, training, DDPM then DDIM sampling (streamed), checks."""
    kind = _kind(params)
    s = make_schedule(params.schedule, params.T)
    g, device = ctx.generator, ctx.device
    # Every chart starts afresh (a rerun on the same page, or other data than the page's),
    # the schedule first: it is complete before any sampling or training.
    yield react("schedule", figs.schedule_figure(s))
    ddim_count = len(ddim_timesteps(params.T, params.ddim_steps))
    for name, fig in figs.figures(params, s, ddim_count).items():
        if name != "schedule":
            yield react(name, fig)

    # 1. Data and the forward process.
    train, held = _data(params, ctx)
    d = train.shape[1]
    if kind == "digits":
        yield restyle("data", [0], z=[_grid(train)])
    else:
        yield restyle("data", [figs.DATA_POINTS], x=[_np(train[:SHOWN_POINTS, 0])],
                      y=[_np(train[:SHOWN_POINTS, 1])])
    clouds, copies, x0 = _forward_chain(train, s, ctx, kind)
    shown = figs.forward_times(s.T)
    if kind == "digits":
        columns = [clouds[t][:6] for t in shown]  # 6 digits down, one column per t
        grid = np.stack([_np(c).astype(np.float32) for c in columns], axis=1).reshape(-1, d)
        yield restyle("forward", [0], z=[figs.digit_grid(grid, cols=len(shown))])
    else:
        yield restyle("forward", list(range(len(shown))),
                      x=[_np(clouds[t][:FORWARD_SHOWN, 0]).astype(np.float32) for t in shown],
                      y=[_np(clouds[t][:FORWARD_SHOWN, 1]).astype(np.float32) for t in shown])
    forward_checks = [_forward_check(copies, x0, s), _posterior_check(train, s, ctx)]
    noise_check = _x_T_check(clouds[s.T], clouds[0], s)

    # 2. Training ε_θ with the simplified criterion.
    net = make_net(d, params, ctx)
    untrained = {k: v.clone() for k, v in net.state_dict().items()}
    optimiser = torch.optim.Adam(net.parameters(), lr=params.lr)
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda k: min(1.0, 2.0 * (1.0 - k / params.train_steps)))
    alpha_bar = torch.as_tensor(s.alpha_bar, dtype=torch.float32, device=device)
    sqrt_ab, sqrt_1m_ab = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
    steps = params.train_steps
    block = max(1, math.ceil(steps / LOSS_POINTS))
    every = block * max(1, math.ceil(steps / block / LOSS_FRAMES))
    total = steps + params.T + ddim_count
    losses = torch.empty(steps, device=device)
    sent = 0
    for step in range(steps):
        if ctx.should_stop():
            return
        idx = torch.randint(0, len(train), (params.batch_size,), generator=g, device=device)
        losses[step] = train_step(net, optimiser, train[idx], sqrt_ab, sqrt_1m_ab, g)
        decay.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            chunk = _np(losses[sent:step + 1]).astype(np.float64)
            blocks = np.array([b.mean() for b in np.array_split(
                chunk, max(1, math.ceil(len(chunk) / block)))])
            x = sent + block * np.arange(len(blocks), dtype=np.float64) + block / 2
            sent = step + 1
            yield _with_status(extend("loss", [figs.LOSS_BLOCKS], x=[x], y=[blocks]),
                               (step + 1, total), loss=float(blocks[-1]), step=step + 1)
    net.eval()

    # 3. DDPM, then DDIM, from the same trained network: streamed, stored for the slider.
    sigma2 = s.beta if params.variance == "beta" else s.beta_tilde
    clip = _clip_box(params, train)
    n = params.samples
    if kind == "2d":
        hx, hy = _cloud(held, HELD_SHOWN)
        yield restyle("samples", [figs.DDPM_DATA, figs.DDIM_DATA], x=[hx, hx], y=[hy, hy])
    stored: dict[str, dict[int, np.ndarray]] = {}
    finals: dict[str, torch.Tensor] = {}
    paths: dict[str, np.ndarray | None] = {}
    done = steps
    for key, sampler, count in (
        ("ddpm", lambda x: ddpm_sample(net, x, s, sigma2, g, clip), params.T),
        ("ddim", lambda x: ddim_sample(net, x, s, params.ddim_steps, clip), ddim_count),
    ):
        x_T = torch.randn(n, d, generator=g, device=device)
        final, stored[key], paths[key] = yield from _stream(
            key, sampler(x_T), count, kind, (done, total), ctx)
        if final is None:
            return
        finals[key] = final
        done += count

    # 4. Quality: the same samplers with the untrained weights, a Gaussian fit, the data floor.
    n_eval = min(n, len(held))
    net.load_state_dict(untrained)
    baseline = {
        "ddpm": _last(ddpm_sample(net, torch.randn(n_eval, d, generator=g, device=device),
                                  s, sigma2, g, clip), ctx.should_stop),
        "ddim": _last(ddim_sample(net, torch.randn(n_eval, d, generator=g, device=device),
                                  s, params.ddim_steps, clip), ctx.should_stop),
    }
    if ctx.should_stop() or any(v is None for v in baseline.values()):
        return
    distance: Callable[[torch.Tensor, torch.Tensor], float] = (
        energy_distance if kind == "2d" else nn_distance)
    gauss = distance(_gaussian_fit(train, n_eval, g), held)
    floor = distance(train[:n_eval], held)
    quality = {
        key: {key.upper(): distance(finals[key][:n_eval], held),
              "untrained": distance(baseline[key], held), "Gaussian fit": gauss,
              "data floor": floor}
        for key in ("ddpm", "ddim")
    }
    checks = [*forward_checks, _quality_check("DDPM", kind, quality["ddpm"]),
              _quality_check("DDIM", kind, quality["ddim"]), noise_check]
    bars = {"DDPM": quality["ddpm"]["DDPM"], "DDIM": quality["ddim"]["DDIM"],
            "untrained (DDPM)": quality["ddpm"]["untrained"],
            "untrained (DDIM)": quality["ddim"]["untrained"], "Gaussian fit": gauss}
    if kind == "digits":  # for 2-D the floor is an energy distance of about 0, off a log axis
        bars["held-out vs training"] = floor
    yield react("quality", figs.quality_figure(params, bars, [c.reference for c in checks[2:4]]))

    # 5. The sample chart again, now with a slider over the stored frames.
    yield react("samples", _scrubbable(params, finals, held, stored, paths, ddim_count))
    yield finish(
        checks,
        final_loss=float(losses[-max(1, steps // 20):].mean()),
        ddpm_distance=quality["ddpm"]["DDPM"],
        ddim_distance=quality["ddim"]["DDIM"],
        gaussian_fit_distance=gauss,
    )


def _stream(key: str, samples: Iterator[tuple[int, torch.Tensor]], count: int, kind: str,
            progress: tuple[int, int], ctx: RunContext
            ) -> Generator[Frame, None, tuple[torch.Tensor | None, dict[int, np.ndarray],
                                              np.ndarray | None]]:
    """Run one sampler, streaming every few of its ``count`` steps: for 2-D one restyle of the
    cloud and of the paths so far (one redraw of the chart per frame), for digits the grid.

    Returns the final samples (None when cancelled), the states kept for the slider by t, and
    the paths (steps + 1, PATHS, 2) of the first samples (2-D).
    """
    emit_every = max(1, math.ceil(count / SAMPLE_FRAMES[key]))
    store_every = max(1, math.ceil(count / SLIDER_FRAMES))
    cloud_i, path_i, grid_i = ((figs.DDPM_CLOUD, figs.DDPM_PATHS, figs.DDPM_GRID) if key == "ddpm"
                               else (figs.DDIM_CLOUD, figs.DDIM_PATHS, figs.DDIM_GRID))
    path: list[np.ndarray] = []
    stored: dict[int, np.ndarray] = {}
    x = None
    for i, (t, x) in enumerate(samples):
        if ctx.should_stop():
            return None, stored, None
        if kind == "2d":
            path.append(_np(x[:figs.PATHS]).astype(np.float32))
        if i % store_every == 0 or t == 0:
            stored[t] = _np(x[:SHOWN_POINTS] if kind == "2d" else x[:SHOWN_DIGITS])
        if i % emit_every and t != 0:
            continue
        if kind == "digits":
            frame = restyle("samples", [grid_i], z=[_grid(x)])
        else:
            xy = np.stack(path)  # (steps so far, PATHS, 2)
            cx, cy = _cloud(x, SHOWN_POINTS)
            frame = restyle("samples", [cloud_i, *path_i],
                            x=[cx, *(xy[:, p, 0].copy() for p in range(figs.PATHS))],
                            y=[cy, *(xy[:, p, 1].copy() for p in range(figs.PATHS))])
        yield _with_status(frame, (progress[0] + i, progress[1]), sampler=key.upper(), t=t)
    return x, stored, np.stack(path) if path else None


def _last(samples: Iterator[tuple[int, torch.Tensor]],
          should_stop: Callable[[], bool]) -> torch.Tensor | None:
    last = None
    for _, x in samples:
        if should_stop():
            return None
        last = x
    return last


def _scrubbable(params: DiffusionParams, finals: dict[str, torch.Tensor], held: torch.Tensor,
                stored: dict[str, dict[int, np.ndarray]], paths: dict[str, np.ndarray],
                ddim_count: int) -> Any:
    """The final sample chart, with frames at the stored DDPM times; at each, DDIM's state at
    the same noise level (its last time τ >= t, i.e. the state it had when passing t)."""
    fig = figs.samples_figure(params, ddim_count)
    times = sorted(stored["ddpm"], reverse=True)  # T … 0
    labels = [str(t) for t in times]
    frames = []
    for t in times:
        a = stored["ddpm"][t]
        b = stored["ddim"][min(tau for tau in stored["ddim"] if tau >= t)]  # T is kept
        if params.data == "digits":
            frames.append([dict(type="heatmap", z=figs.digit_grid(a)),
                           dict(type="heatmap", z=figs.digit_grid(b))])
        else:
            frames.append([dict(type="scatter", x=a[:, 0].astype(np.float32),
                                y=a[:, 1].astype(np.float32)),
                           dict(type="scatter", x=b[:, 0].astype(np.float32),
                                y=b[:, 1].astype(np.float32))])
    if params.data == "digits":
        fig.data[figs.DDPM_GRID].z = figs.digit_grid(_np(finals["ddpm"][:SHOWN_DIGITS]))
        fig.data[figs.DDIM_GRID].z = figs.digit_grid(_np(finals["ddim"][:SHOWN_DIGITS]))
        return figs.with_slider(fig, labels, frames, [figs.DDPM_GRID, figs.DDIM_GRID], True)
    hx, hy = _cloud(held, HELD_SHOWN)
    for key, data_i, cloud_i, path_i in (
        ("ddpm", figs.DDPM_DATA, figs.DDPM_CLOUD, figs.DDPM_PATHS),
        ("ddim", figs.DDIM_DATA, figs.DDIM_CLOUD, figs.DDIM_PATHS),
    ):
        fig.data[data_i].x, fig.data[data_i].y = hx, hy
        fig.data[cloud_i].x, fig.data[cloud_i].y = _cloud(finals[key], SHOWN_POINTS)
        for p, i in enumerate(path_i):
            fig.data[i].x, fig.data[i].y = paths[key][:, p, 0], paths[key][:, p, 1]
    return figs.with_slider(fig, labels, frames, [figs.DDPM_CLOUD, figs.DDIM_CLOUD], False)


experiment = Experiment(
    slug="diffusion",
    title="Denoising diffusion: train ε_θ, then sample (DDPM and DDIM)",
    section=Section("1.10.3", "Denoising diffusion", chapter="1 History"),
    summary=(
        "Noise a data set step by step until it is N(0, I), train a small network ε_θ to "
        "predict the noise with the simplified criterion, then run the chain backwards: "
        "x_{t−1} = m_θ(x_t, t) + σ_t z turns fresh noise into new data. Pick a 2-D toy, draw "
        "your own shape, or learn 8×8 digits; watch the samples leave the noise, compare "
        "DDIM's deterministic sampler with fewer steps, and scrub back through time."
    ),
    formulas=FORMULAS,
    Params=DiffusionParams,
    figures=figures,
    run=run,
    clicks=(ClickInput("data", points="shape"),),
)
