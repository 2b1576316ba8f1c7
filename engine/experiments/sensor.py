r"""2.1 The digital image and sensors: additive Gaussian noise, and blooming in a CCD.

**Noise.** The sheet names "additive Gaussian noise" without a formula; per ERRATA.md G-2.1-1
it is

.. math:: \tilde I(x,y) = I(x,y) + n(x,y),\qquad n(x,y) \overset{iid}{\sim}
          \mathcal N(0, \sigma^2),\ \text{independent of } I .

For images in [0, 1] and the noisy image left unclipped, the mean squared error is
:math:`\mathbb E\,n^2 = \sigma^2`, so :math:`\mathrm{PSNR} = 10\log_{10}(1/\mathrm{MSE})
\approx -20\log_{10}\sigma` whatever the picture; its sampling error over :math:`N` pixels is
about :math:`\tfrac{10}{\ln 10}\sqrt{2/N}` dB. Clipping to [0, 1], as a display or a file
would, removes part of the noise and raises the PSNR at large :math:`\sigma`.

**Blooming.** A CCD photosite holds at most its full-well capacity :math:`C` of charge; the
channel stops between columns keep the overflow of an over-exposed site in its column, so it
floods the sites above and below: a bright vertical line. The toy model here: each step, every
site with charge :math:`q > C` keeps :math:`C` and passes the excess :math:`q - C` to the
vertical neighbour on the side of the nearest site in its column that is not full (half to
each side on a tie). Charge is conserved, moves only vertically, and relaxes in at most about
one step per site flooded. A spot of charge :math:`Q < HC` (:math:`H` rows) ends with every
site :math:`\le C` (at :math:`Q = HC` the column is exactly full and rounding leaves charge
with nowhere to go, so the bounds keep a full well of room); the spot's excess :math:`Q - C`
goes half up and half down unless a side reaches the edge of the array, and each side ends
as a run of full sites plus at most one partly filled one. With at most two partial sites,
the number of saturated ones is :math:`n_{\mathrm{sat}} > Q/C - 2`, so :math:`Q \ge 10C`
guarantees the 9 that CHECKS.md 2.1-b asks for; the spot's bounds (10 to 47 full wells on a
48-row array) keep both conditions.

References: Gonzalez & Woods, *Digital Image Processing* §2.4 and §5.2; Janesick, *Scientific
Charge-Coupled Devices* (SPIE 2001) on blooming.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from pydantic import Field
from scipy import stats

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
    restyle,
    status,
)
from engine.images import gray_heatmap, image_axes, image_field, load_image, psnr, to_display

SE_COUNT = 4.0  # CHECKS.md 2.1-a: the variance within 4 standard errors
PSNR_TOL_DB = 0.3  # CHECKS.md 2.1-a, for images of ≥ 128² pixels (see psnr_tolerance)
KS_ALPHA = 1e-4  # false-alarm rate of the Kolmogorov–Smirnov check
SIGMA_SWEEP = np.geomspace(0.005, 0.5, 25)
SWEEP_CHUNK = 5
CCD_SIDE = 48  # photosites per row and per column of the toy CCD
CONSERVE_TOL = 1e-9  # CHECKS.md 2.1-b, relative to the spot's charge Q
MIN_SATURATED = 9  # CHECKS.md 2.1-b
SATURATED_RTOL = 1e-9  # a site within this fraction of C counts as full


class SensorParams(Params):
    """The picture and its noise; the CCD's capacity and the bright spot."""

    image: str = image_field("camera")
    size: int = Field(128, ge=32, le=256, description="Picture side in pixels.")
    sigma: float = Field(0.05, ge=0.005, le=0.3,
                         description="Noise standard deviation σ (the picture is in [0, 1]).")
    spot: float = Field(20.0, ge=10.0, le=CCD_SIDE - 1.0,
                        description="Charge Q of the bright spot in full wells, Q/C: at least "
                        "10 (≥ 9 saturated sites), at most 47, so that its 48-site column "
                        "keeps room.")
    capacity: float = Field(20000.0, ge=1000.0, le=200000.0,
                            description="Full-well capacity C of a photosite, in electrons.")
    spot_row: float = Field(24.0, ge=0.0, le=CCD_SIDE - 1.0,
                            description="Row of the spot on the 48×48 CCD (or click the CCD).")
    spot_col: float = Field(24.0, ge=0.0, le=CCD_SIDE - 1.0,
                            description="Column of the spot (rounded to a photosite).")


FORMULAS = (
    Formula("Additive Gaussian noise",
            r"\tilde I(x,y) = I(x,y) + n(x,y),\quad n(x,y) \overset{iid}{\sim}"
            r"\mathcal N(0,\sigma^2)\ \text{independent of } I", erratum="G-2.1-1"),
    Formula("PSNR of unclipped noise on [0, 1] images",
            r"\mathrm{PSNR} = 10\log_{10}\frac{1}{\frac1N\sum n^2} \approx -20\log_{10}\sigma"),
    Formula("Blooming (toy model)",
            r"q > C:\ q \leftarrow C,\ \ q - C \to \text{vertical neighbours};\quad"
            r"\textstyle\sum q = Q,\ \ n_{\mathrm{sat}} > Q/C - 2"),
)


# ----------------------------------------------------------------------------------------------
# (a) Additive Gaussian noise


def add_noise(I: torch.Tensor, sigma: float,  # noqa: E741 (the sheet's symbol)
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ĩ = I + n with n ~ N(0, σ²) iid, drawn from ``generator``; returns (Ĩ, n), unclipped."""
    n = sigma * torch.randn(I.shape, generator=generator, device=I.device, dtype=I.dtype)
    return I + n, n


def psnr_tolerance(pixels: int) -> float:
    """0.3 dB, or 4 standard errors of the PSNR when the image is too small for that:
    SE ≈ (10 / ln 10)·√(2/N) dB (the variance of a mean of N squared normals)."""
    return max(PSNR_TOL_DB, SE_COUNT * 10 / math.log(10) * math.sqrt(2 / pixels))


# ----------------------------------------------------------------------------------------------
# (b) Blooming


def bloom_step(q: torch.Tensor, C: float) -> torch.Tensor:
    """One step: every site above capacity keeps C and sends the excess one site up or down,
    towards the nearest site of its column that is not full (half each way on a tie)."""
    H = q.shape[0]
    r = torch.arange(H, device=q.device, dtype=q.dtype)[:, None].expand_as(q)
    excess = (q - C).clamp(min=0.0)
    room = q < C
    inf = torch.full_like(q[:1], math.inf)
    # Nearest site with room strictly above (smaller row) and strictly below each site.
    above = torch.cummax(torch.where(room, r, -math.inf), dim=0).values
    below = torch.cummin(torch.where(room, r, math.inf).flip(0), dim=0).values.flip(0)
    d_up = r - torch.cat([-inf, above[:-1]])
    d_down = torch.cat([below[1:], inf]) - r
    movable = torch.isfinite(torch.minimum(d_up, d_down))
    w_up = torch.where(d_up < d_down, 1.0, torch.where(d_up == d_down, 0.5, 0.0)) * movable
    w_down = torch.where(movable, 1.0 - w_up, 0.0)
    up, down = excess * w_up, excess * w_down
    zero = torch.zeros_like(q[:1])
    kept = torch.where((excess > 0) & movable, torch.full_like(q, C), q)
    return kept + torch.cat([up[1:], zero]) + torch.cat([zero, down[:-1]])


def bloom(q: torch.Tensor, C: float, max_steps: int) -> Iterator[torch.Tensor]:
    """The states after each step until no site that can pass charge on is above C."""
    for _ in range(max_steps):
        if not bool((q > C).any()):
            return
        q = bloom_step(q, C)
        yield q


def bloom_prediction(Q: float, C: float, H: int, r0: int) -> np.ndarray:
    """The relaxed column in closed form: the excess Q − C split evenly up and down, the
    share a side cannot hold (its rows × C) going to the other; each side fills outwards."""
    E = Q - C
    room_up, room_down = r0 * C, (H - 1 - r0) * C
    up = min(E / 2, room_up)
    down = E - up
    if down > room_down:
        down = room_down
        up = E - down
    column = np.zeros(H)
    column[r0] = C
    for rows, amount in ((np.arange(r0 - 1, -1, -1), up), (np.arange(r0 + 1, H), down)):
        full = int(amount // C)
        column[rows[:full]] = C
        if full < len(rows):
            column[rows[full]] = amount - full * C
    return column


# ----------------------------------------------------------------------------------------------
# Figures


CLEAN, NOISY = range(2)
HIST, DENSITY = range(2)
PSNR_RAW, PSNR_CLIPPED, PSNR_THEORY, PSNR_POINT = range(4)
PROFILE, PREDICTED, CAPACITY = range(3)


def figures(params: SensorParams) -> dict[str, go.Figure]:
    """Clean and noisy picture, noise histogram, PSNR against σ, the CCD and its column."""
    images = make_subplots(rows=1, cols=2, subplot_titles=("clean I", "noisy Ĩ = I + n"),
                           horizontal_spacing=0.03)
    images.add_trace(gray_heatmap(np.zeros((0, 0)), "clean I"), row=1, col=1)
    images.add_trace(gray_heatmap(np.zeros((0, 0)), "noisy Ĩ (shown clipped)"), row=1, col=2)
    axes = image_axes()
    images.update_xaxes(**axes["xaxis"])
    images.update_layout(yaxis=dict(axes["yaxis"], scaleanchor="x"),
                         yaxis2=dict(axes["yaxis"], scaleanchor="x2"),
                         title=f"Additive Gaussian noise, σ = {params.sigma:g}",
                         height=340, plot_bgcolor="white", margin=axes["margin"] | {"t": 70})
    noise = go.Figure(
        [go.Bar(x=[], y=[], name="histogram of n = Ĩ − I", marker=dict(color="#1f77b4"),
                opacity=0.7),
         go.Scatter(x=[], y=[], name="N(0, σ²) density", mode="lines",
                    line=dict(color="#d62728", width=2))],
        layout=dict(title="Noise n against its density N(0, σ²)", bargap=0,
                    xaxis=dict(title="n"), yaxis=dict(title="density")),
    )
    psnr_fig = go.Figure(
        [go.Scatter(x=[], y=[], name="PSNR(I + n, I), unclipped", mode="lines+markers",
                    line=dict(color="#1f77b4")),
         go.Scatter(x=[], y=[], name="PSNR(clip(I + n), I)", mode="lines+markers",
                    line=dict(color="#ff7f0e", dash="dash")),
         go.Scatter(x=SIGMA_SWEEP, y=-20 * np.log10(SIGMA_SWEEP), name="−20 log₁₀ σ",
                    mode="lines", line=dict(color="#000000", dash="dot")),
         go.Scatter(x=[], y=[], name="this run's σ", mode="markers",
                    marker=dict(color="#d62728", size=12, symbol="x"))],
        layout=dict(title="PSNR against σ: −20 log₁₀ σ for unclipped noise",
                    xaxis=dict(title="σ", type="log"), yaxis=dict(title="PSNR (dB)")),
    )
    ccd = go.Figure(
        [gray_heatmap(np.zeros((0, 0)), "charge q / C", colorscale="Hot",
                      hovertemplate="row %{y}, column %{x}: %{z}/255 of C<extra></extra>")],
        layout=image_axes(title="CCD charge q / C (click to move the spot)"),
    )
    column = go.Figure(
        [go.Bar(x=[], y=[], name="charge in the spot's column", marker=dict(color="#ff7f0e")),
         go.Scatter(x=[], y=[], name="closed form after relaxation", mode="markers",
                    marker=dict(color="#000000", symbol="line-ew-open", size=12)),
         go.Scatter(x=[-0.5, CCD_SIDE - 0.5], y=[1, 1], name="full-well capacity C",
                    mode="lines", line=dict(color="#d62728", dash="dash"))],
        layout=dict(title="The spot's column: charge q / C by row", bargap=0.05,
                    xaxis=dict(title="row", range=[-0.5, CCD_SIDE - 0.5]),
                    yaxis=dict(title="q / C", range=[0, 1.1])),
    )
    return {"images": images, "noise": noise, "psnr": psnr_fig, "ccd": ccd, "column": column}


# ----------------------------------------------------------------------------------------------
# The run


def run(params: SensorParams, ctx: RunContext) -> Iterator[Frame]:
    # (a) Ĩ = I + n on the picture, then PSNR over a sweep of σ with the same standard draw.
    I = load_image(params.image, params.size, ctx, dtype=torch.float64)  # noqa: E741
    I_noisy, n = add_noise(I, params.sigma, ctx.generator)
    yield restyle("images", [CLEAN, NOISY], z=[to_display(I), to_display(I_noisy)])
    n_np = n.cpu().numpy().ravel()
    edges = np.linspace(-4 * params.sigma, 4 * params.sigma, 61)
    density, _ = np.histogram(n_np, bins=edges, density=True)
    grid = np.linspace(edges[0], edges[-1], 201)
    yield restyle("noise", [HIST, DENSITY], x=[(edges[:-1] + edges[1:]) / 2, grid],
                  y=[density, stats.norm.pdf(grid, scale=params.sigma)])
    psnr_run = psnr(I_noisy, I)
    yield restyle("psnr", [PSNR_POINT], x=[[params.sigma]], y=[[psnr_run]])

    z = n / params.sigma  # the standard normal draw behind n
    sweep_frames = -(-len(SIGMA_SWEEP) // SWEEP_CHUNK)
    H = CCD_SIDE
    r0, c0 = round(params.spot_row), round(params.spot_col)
    C, Q = params.capacity, params.spot * params.capacity
    q = torch.zeros((H, H), dtype=torch.float64, device=ctx.device)
    q[r0, c0] = Q
    states = []
    for state in bloom(q, C, max_steps=4 * H):
        states.append(state)
    total = sweep_frames + len(states)
    for i, start in enumerate(range(0, len(SIGMA_SWEEP), SWEEP_CHUNK), start=1):
        if ctx.should_stop():
            return
        sigmas = SIGMA_SWEEP[start:start + SWEEP_CHUNK]
        raw = [psnr(I + s * z, I) for s in sigmas]
        clipped = [psnr((I + s * z).clamp(0.0, 1.0), I) for s in sigmas]
        yield extend("psnr", [PSNR_RAW, PSNR_CLIPPED], x=[sigmas] * 2, y=[raw, clipped])
        yield status((i, total), sigma=float(sigmas[-1]), psnr=raw[-1])

    # (b) Blooming, step by step.
    rows = np.arange(H)
    yield restyle("ccd", [0], z=[to_display(q / C)])
    yield restyle("column", [PROFILE], x=[rows], y=[q[:, c0].cpu().numpy() / C])
    for step, state in enumerate(states, start=1):
        if ctx.should_stop():
            return
        yield restyle("ccd", [0], z=[to_display(state / C)])
        yield restyle("column", [PROFILE], y=[state[:, c0].cpu().numpy() / C])
        yield status((sweep_frames + step, total), bloom_step=step,
                     saturated=int((state[:, c0] >= C * (1 - SATURATED_RTOL)).sum()))
    final = (states[-1] if states else q).cpu().numpy()
    predicted = bloom_prediction(Q, C, H, r0)
    yield restyle("column", [PREDICTED], x=[rows], y=[predicted / C])

    checks = _noise_checks(params, I, I_noisy, n, psnr_run) + _bloom_checks(
        final, predicted, Q, C, r0, c0, len(states))
    yield finish(checks, psnr=psnr_run, psnr_predicted=-20 * math.log10(params.sigma),
                 noise_std=float(n_np.std(ddof=1)), bloom_steps=len(states),
                 saturated=int((final[:, c0] >= C * (1 - SATURATED_RTOL)).sum()))


def _noise_checks(params: SensorParams, I: torch.Tensor, I_noisy: torch.Tensor,  # noqa: E741
                  n: torch.Tensor, psnr_run: float) -> list[Check]:
    """CHECKS.md 2.1-a, plus the noise's distribution and its independence of I."""
    sigma2 = params.sigma**2
    noise = (I_noisy - I).cpu().numpy().ravel()  # recovered from the images, not from n
    N = noise.size
    var = float(np.var(noise, ddof=1))
    se = sigma2 * math.sqrt(2 / (N - 1))  # SE of a sample variance of normals
    predicted = -20 * math.log10(params.sigma)
    tol_db = psnr_tolerance(N)
    ks = stats.kstest(noise, "norm", args=(0.0, params.sigma))
    image = I.cpu().numpy().ravel()
    rho = float(np.corrcoef(noise, image)[0, 1]) if image.std() > 0 else 0.0
    rho_bound = SE_COUNT / math.sqrt(N)
    return [
        Check(
            name="Noise variance is σ²",
            formula=r"\big|\widehat{\operatorname{Var}}(\tilde I - I) - \sigma^2\big| \le "
            r"4\,\sigma^2\sqrt{2/(N-1)}",
            measured=var, reference=sigma2, relation="≈", passed=abs(var - sigma2) <= 4 * se,
            detail=f"Sample variance of Ĩ − I over N = {N} pixels; 4·SE = {4 * se:.3g} "
            f"({abs(var - sigma2) / se:.2f} SE off).",
        ),
        Check(
            name="PSNR is −20 log₁₀ σ",
            formula=r"\big|\mathrm{PSNR}(\tilde I, I) + 20\log_{10}\sigma\big| \le "
            rf"{tol_db:.3g}\ \mathrm{{dB}}",
            measured=psnr_run, reference=predicted, relation="≈",
            passed=abs(psnr_run - predicted) <= tol_db,
            detail=f"Unclipped Ĩ; tolerance 0.3 dB, or 4·SE = 4·(10/ln 10)·√(2/N) dB for "
            f"small pictures (here {tol_db:.3g} dB).",
        ),
        Check(
            name="Noise is N(0, σ²) (Kolmogorov–Smirnov)",
            formula=r"p_{\mathrm{KS}}\big(\tilde I - I,\ \mathcal N(0,\sigma^2)\big) \ge 10^{-4}",
            measured=float(ks.pvalue), reference=KS_ALPHA, relation=">=",
            passed=ks.pvalue >= KS_ALPHA,
            detail=f"scipy.stats.kstest: D = {ks.statistic:.4f} over {N} pixels.",
        ),
        Check(
            name="Noise is independent of I",
            formula=r"|\hat\rho(n, I)| \le 4/\sqrt N",
            measured=abs(rho), reference=rho_bound, relation="<=",
            detail="Pearson correlation of the noise with the clean picture (zero under "
            "independence, with standard error 1/√N)" + ("" if image.std() > 0 else
                                                        "; the picture is flat, so 0") + ".",
        ),
    ]


def _bloom_checks(final: np.ndarray, predicted: np.ndarray, Q: float, C: float, r0: int,
                  c0: int, steps: int) -> list[Check]:
    """CHECKS.md 2.1-b on the relaxed array, and the closed form of its column."""
    outside = np.delete(final, c0, axis=1)
    spread = int(np.count_nonzero(outside))
    conserved = abs(float(final.sum()) - Q) / Q
    over = float(final.max() / C)
    saturated = int((final[:, c0] >= C * (1 - SATURATED_RTOL)).sum())
    profile_error = float(np.abs(final[:, c0] - predicted).max() / C)
    return [
        Check(
            name="Only the spot's column holds charge",
            formula=r"q_{r,c} = 0\ \ \forall c \ne c_0",
            measured=spread, reference=0, relation="=", passed=spread == 0,
            detail=f"Non-zero sites outside column {c0} after {steps} steps.",
        ),
        Check(
            name="Charge is conserved",
            formula=r"\big|\textstyle\sum_{r,c} q_{r,c} - Q\big| / Q \le 10^{-9}",
            measured=conserved, reference=CONSERVE_TOL, relation="<=",
            detail=f"Q = {Q:.6g} e⁻ at row {r0}, column {c0}.",
        ),
        Check(
            name="No site exceeds its full well",
            formula=r"\max_{r,c} q_{r,c} \le C",
            measured=over, reference=1.0, relation="<=",
            detail=f"max q / C after relaxation (C = {C:.6g} e⁻).",
        ),
        Check(
            name="A bright vertical line: at least 9 saturated sites",
            formula=r"n_{\mathrm{sat}} > Q/C - 2 \ \Rightarrow\ n_{\mathrm{sat}} \ge 9"
            r"\ \text{ for } Q \ge 10C",
            measured=saturated, reference=MIN_SATURATED, relation=">=",
            detail=f"Sites of column {c0} within 10⁻⁹ of C, for Q/C = {Q / C:.4g}.",
        ),
        Check(
            name="The column matches the closed form",
            formula=r"\max_r |q_{r,c_0} - q^{\mathrm{pred}}_r| / C \le 10^{-9}",
            measured=profile_error, reference=CONSERVE_TOL, relation="<=",
            detail="Excess Q − C split evenly up and down (the overflow of a side that meets "
            "the edge going to the other), each side filled outwards from the spot.",
        ),
    ]


experiment = Experiment(
    slug="sensor",
    title="Sensor: additive Gaussian noise and CCD blooming",
    section=Section("2.1", "The digital image and sensors", chapter="2 Computer vision"),
    summary=(
        "Add Gaussian noise n ~ N(0, σ²) to a picture and watch the PSNR follow −20 log₁₀ σ "
        "(until clipping to [0, 1] bends it); then over-expose one photosite of a toy CCD and "
        "watch its overflow flood the column step by step into a bright vertical line, with "
        "charge conserved and no site above its full well."
    ),
    formulas=FORMULAS,
    Params=SensorParams,
    figures=figures,
    run=run,
    clicks=(ClickInput("ccd", x="spot_col", y="spot_row"),),
)
