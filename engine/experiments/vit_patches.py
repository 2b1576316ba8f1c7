r"""1.6 Vision transformer patch embedding: an image as a sequence of p×p patch tokens.

The cheat sheet: an image with q channels is cut into p×p patches, and each patch becomes one
token through a linear map,

.. math:: \mathbb R^{p\times p\times q} \ni \text{patch}_t \mapsto
          x_t := V\operatorname{vec}(\text{patch}_t) \in \mathbb R^n,
          \qquad V \in \mathbb R^{n\times(qp^2)},

which is a convolution with kernel p, stride p and n output channels (Dosovitskiy et al.,
*An image is worth 16x16 words*, 2021). Here vec stacks a patch row by row, the channels of a
pixel together: :math:`\operatorname{vec}(\text{patch})_{(i p + j) q + c} =
\text{patch}[i, j, c]`. (The sheet's q is the channel count here, not the key width of 1.6.1.)

The run cuts a held-out 8×8 digit of scikit-learn's ``load_digits`` (q = 1) into patches,
and trains a small ViT on the other digits: patch tokens plus a class token ``[CLS]`` and
learned positions, one or two attention layers of :mod:`engine.experiments.transformer`, and
a linear read-out of ``[CLS]``. It streams the embedding V, the embedded tokens and the
attention over the patches, in particular where ``[CLS]`` looks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn

from engine.core import (
    Check,
    Experiment,
    Formula,
    Frame,
    Params,
    RunContext,
    Section,
    extend,
    finish,
    restyle,
)
from engine.experiments.transformer import EncoderBlock, init_parameters

SIDE = 8  # load_digits images are 8×8, one channel
CHANNELS = 1
TRAIN = 1500  # the first 1500 (shuffled) digits train, the other 297 are held out
BATCH = 64
ACCURACY_TARGET = 0.85  # held-out accuracy of the default budget (it reaches ~0.9)
CONV_TOL = 1e-12  # CHECKS.md 1.6-g, float64
ROW_SUM_TOL = 1e-5  # float32 attention rows
MAP_UPDATES = 30
WORK_LIMIT = 4_000_000  # steps × layers × tokens × width: ~7 µs each on one CPU core
CURVE_POINTS = 60
ACCURACY_POINTS = 15  # each scores all held-out digits, which costs as much as ~5 steps
LOSS, ACCURACY = range(2)


class VitParams(Params):
    """The patch size, the image shown, the small ViT and its budget."""

    patch: Literal[1, 2, 4] = Field(
        2, description="Patch side p: the 8×8 digit becomes (8/p)² tokens of q·p² numbers "
        "(p = 1: one token per pixel).",
    )
    digit: int = Field(0, ge=0, le=296, description="Which held-out digit to show (0 … 296).")
    width: int = Field(
        32, ge=8, le=64, multiple_of=4,
        description="Token width n: V ∈ ℝ^{n×(qp²)} maps a patch to ℝⁿ.",
    )
    heads: int = Field(2, ge=1, le=4, description="Attention heads; must divide n.")
    layers: int = Field(1, ge=1, le=2, description="Attention layers (transformer blocks).")
    steps: int = Field(300, ge=20, le=1000, description="Adam steps, 64 digits each.")
    lr: float = Field(3e-3, ge=1e-4, le=3e-2, description="Adam learning rate η.")

    @field_validator("heads")
    @classmethod
    def _heads_divide_width(cls, heads: int, info: ValidationInfo) -> int:
        width = info.data.get("width")
        if width is not None and width % heads:
            raise ValueError(f"heads must divide width, got heads={heads}, width={width}")
        return heads

    @field_validator("steps")
    @classmethod
    def _fits_the_time_limit(cls, steps: int, info: ValidationInfo) -> int:
        # A step costs about layers × tokens × width (see the attention experiment).
        data = info.data
        if not all(k in data for k in ("patch", "layers", "width")):
            return steps
        tokens = (SIDE // data["patch"]) ** 2 + 1
        per_step = data["layers"] * tokens * data["width"]
        if steps * per_step > WORK_LIMIT:
            raise ValueError(
                f"{steps} steps of this model is more work than one run may do: steps × layers "
                f"× tokens × width = {steps} × {data['layers']} × {tokens} × {data['width']} = "
                f"{steps * per_step:.3g} > {WORK_LIMIT:.3g} (about half a minute on one CPU "
                f"core); use at most {WORK_LIMIT // per_step} steps, or larger patches or a "
                "smaller model"
            )
        return steps


# ----------------------------------------------------------------------------------------------
# Patches.


def patchify(image: Tensor, p: int) -> Tensor:
    """(..., H, W, q) → (..., T, q p²): patches in row-major order, each vec'd row by row."""
    *lead, H, W, q = image.shape
    if H % p or W % p:
        raise ValueError(f"patch side p={p} must divide the image sides {H}×{W}")
    x = image.reshape(*lead, H // p, p, W // p, p, q)  # (..., H/p, i, W/p, j, c)
    x = x.movedim(-4, -3)  # (..., H/p, W/p, i, j, c)
    return x.reshape(*lead, (H // p) * (W // p), p * p * q)


def unpatchify(tokens: Tensor, p: int, H: int, W: int, q: int) -> Tensor:
    """Inverse of :func:`patchify`: (..., T, q p²) → (..., H, W, q)."""
    *lead, _, _ = tokens.shape
    x = tokens.reshape(*lead, H // p, W // p, p, p, q).movedim(-3, -4)  # (..., H/p, i, W/p, j, c)
    return x.reshape(*lead, H, W, q)


def conv_weight(V: Tensor, p: int, q: int) -> Tensor:
    """V (n, q p²) as the weight (n, q, p, p) of the equivalent ``Conv2d(q, n, p, stride=p)``."""
    return V.reshape(V.shape[0], p, p, q).permute(0, 3, 1, 2)


@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits as (N, 8, 8, 1) in [0, 1] (float32) and their labels, in
    one fixed shuffled order (the same for every run): the file's last digits come from other
    writers, so a split by position would test a distribution shift, not the model."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    images = (data.images[order] / 16.0).astype(np.float32)[..., None]
    return images, data.target[order].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# The model.


class TinyViT(nn.Module):
    """Patch tokens x_t = V vec(patch_t), a [CLS] token, learned positions, encoder blocks,
    and a linear read-out of [CLS]. Keys and queries have width n/h per head, β = 1/√(n/h)."""

    def __init__(self, params: VitParams, classes: int = 10) -> None:
        super().__init__()
        p, n = params.patch, params.width
        tokens = (SIDE // p) ** 2
        self.beta = 1 / math.sqrt(n // params.heads)
        self.V = nn.Linear(CHANNELS * p * p, n, bias=False)  # weight: V ∈ R^{n×(qp²)}
        self.cls = nn.Parameter(torch.zeros(1, 1, n))
        self.position = nn.Parameter(torch.zeros(tokens + 1, n))
        self.blocks = nn.ModuleList(EncoderBlock(n, params.heads, n // params.heads)
                                    for _ in range(params.layers))
        self.ln_out = nn.LayerNorm(n)
        self.head = nn.Linear(n, classes)

    def embed(self, patches: Tensor) -> Tensor:
        """(B, T, q p²) → (B, T+1, n): [CLS], then V vec(patch_t), plus the positions."""
        x = self.V(patches)
        cls = self.cls.expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.position

    def forward(self, patches: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, maps = self.embed(patches), []
        for block in self.blocks:
            x, A = block(x, self.beta, False)
            maps.append(A)
        return self.head(self.ln_out(x[:, 0])), maps


def build_model(params: VitParams, seed: int, device: torch.device | str = "cpu") -> TinyViT:
    model = TinyViT(params)
    generator = torch.Generator().manual_seed(seed)
    init_parameters(model, generator)
    with torch.no_grad():  # positions and [CLS] at the scale of the patch tokens
        model.position.mul_(0.1)
        model.cls.mul_(0.1)
    return model.to(device)


# ----------------------------------------------------------------------------------------------
# Figures.

FORMULAS = (
    Formula(
        "Patch embedding",
        r"\mathbb{R}^{p \times p \times q} \ni \text{patch}_t \mapsto x_t := V\,"
        r"\operatorname{vec}(\text{patch}_t) \in \mathbb{R}^n,"
        r"\quad V \in \mathbb{R}^{n \times (q p^2)}",
    ),
    Formula(
        "Softmax attention over patches",
        r"A = \operatorname{softmax}(\beta Q^\top K),\quad \sum_t a_{st} = 1",
    ),
)


def grid_side(params: VitParams) -> int:
    return SIDE // params.patch


def token_names(params: VitParams) -> list[str]:
    return ["CLS"] + [str(t + 1) for t in range(grid_side(params) ** 2)]


def patch_strip(patches: np.ndarray, p: int) -> np.ndarray:
    """The tokens side by side, one pixel of NaN between them: (p, T (p+1) − 1)."""
    T = patches.shape[0]
    strip = np.full((p, T * (p + 1) - 1), np.nan, dtype=np.float32)
    for t in range(T):
        strip[:, t * (p + 1): t * (p + 1) + p] = patches[t].reshape(p, p, CHANNELS)[..., 0]
    return strip


def figures(params: VitParams) -> dict[str, go.Figure]:
    """The image with its patch grid, the token sequence, V and the tokens, the attention."""
    p, g = params.patch, grid_side(params)
    images, labels = digits()
    image = images[TRAIN + params.digit]  # (8, 8, 1)
    gray = [[0, "#ffffff"], [1, "#111111"]]
    lines = [dict(type="line", x0=k * p - 0.5, x1=k * p - 0.5, y0=-0.5, y1=SIDE - 0.5,
                  line=dict(color="#d62728", width=2)) for k in range(1, g)]
    lines += [dict(type="line", y0=k * p - 0.5, y1=k * p - 0.5, x0=-0.5, x1=SIDE - 0.5,
                   line=dict(color="#d62728", width=2)) for k in range(1, g)]
    notes = [dict(x=(t % g) * p - 0.5 + 0.15 * p, y=(t // g) * p - 0.5 + 0.2 * p, text=str(t + 1),
                  showarrow=False, font=dict(color="#d62728", size=10), xanchor="left")
             for t in range(g * g)]
    image_fig = go.Figure(
        go.Heatmap(z=image[..., 0], colorscale=gray, zmin=0, zmax=1, showscale=False),
        layout=dict(title=f"Held-out digit {params.digit} (label {labels[TRAIN + params.digit]})"
                    f", cut into {g * g} patches of {p}×{p}",
                    xaxis=dict(showticklabels=False, range=[-0.5, SIDE - 0.5]),
                    yaxis=dict(showticklabels=False, autorange="reversed", scaleanchor="x"),
                    shapes=lines, annotations=notes),
    )
    patches = patchify(torch.from_numpy(image), p).numpy()  # (T, q p²)
    strip_fig = go.Figure(
        go.Heatmap(z=patch_strip(patches, p), colorscale=gray, zmin=0, zmax=1,
                   showscale=False, hoverinfo="skip"),
        layout=dict(title=f"The token sequence: {g * g} patches, each vec'd to qp² = {p * p} "
                    "numbers", height=220,
                    xaxis=dict(tickvals=[t * (p + 1) + (p - 1) / 2 for t in range(g * g)],
                               ticktext=[str(t + 1) for t in range(g * g)], title="token t"),
                    yaxis=dict(showticklabels=False, autorange="reversed", scaleanchor="x")),
    )
    embedding = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.12,
                              subplot_titles=[f"V ∈ ℝ^{{n×qp²}} ({params.width}×{p * p})",
                                              "tokens x_t = V vec(patch_t) (+ [CLS])"])
    embedding.add_trace(go.Heatmap(z=[], coloraxis="coloraxis"), row=1, col=1)
    embedding.add_trace(go.Heatmap(z=[], coloraxis="coloraxis"), row=1, col=2)
    embedding.update_layout(
        title="The linear patch embedding V and the embedded tokens", height=420,
        coloraxis=dict(colorscale="RdBu", cmid=0),
        xaxis=dict(title="vec index"), yaxis=dict(title="output n", autorange="reversed"),
        xaxis2=dict(title="n"),
        yaxis2=dict(tickvals=list(range(g * g + 1)), ticktext=token_names(params),
                    autorange="reversed", title="token"),
    )
    L, h = params.layers, params.heads
    names = token_names(params)
    attention = make_subplots(rows=L, cols=h, horizontal_spacing=0.05, vertical_spacing=0.1,
                              subplot_titles=[f"layer {i + 1} · head {j + 1}"
                                              for i in range(L) for j in range(h)])
    cls = make_subplots(rows=L, cols=h, horizontal_spacing=0.05, vertical_spacing=0.1,
                        subplot_titles=[f"layer {i + 1} · head {j + 1}"
                                        for i in range(L) for j in range(h)])
    for i in range(L):
        for j in range(h):
            attention.add_trace(go.Heatmap(z=[], coloraxis="coloraxis"), row=i + 1, col=j + 1)
            cls.add_trace(go.Heatmap(z=[], coloraxis="coloraxis"), row=i + 1, col=j + 1)
    attention.update_xaxes(tickvals=list(range(len(names))), ticktext=names,
                           tickfont=dict(size=8))
    attention.update_yaxes(tickvals=list(range(len(names))), ticktext=names,
                           tickfont=dict(size=8), autorange="reversed")
    attention.update_layout(title="Attention over [CLS] and the patches (row: query)",
                            height=160 + 260 * L,
                            coloraxis=dict(cmin=0, cmax=1, colorscale="Viridis"))
    cls.update_xaxes(showticklabels=False)
    cls.update_yaxes(showticklabels=False, autorange="reversed", scaleanchor="x")
    cls.update_layout(title="Where [CLS] looks: its attention row on the patch grid",
                      height=160 + 240 * L, coloraxis=dict(cmin=0, colorscale="Viridis"))
    training = go.Figure(
        [go.Scatter(x=[], y=[], name="cross-entropy loss", mode="lines"),
         go.Scatter(x=[], y=[], name="held-out accuracy", mode="lines+markers", yaxis="y2")],
        layout=dict(title="Training the small ViT on the other digits", xaxis=dict(title="step"),
                    yaxis=dict(title="loss", type="log"),
                    yaxis2=dict(title="accuracy", overlaying="y", side="right",
                                range=[0, 1.02])),
    )
    return {"image": image_fig, "patches": strip_fig, "embedding": embedding,
            "attention": attention, "cls_attention": cls, "training": training}


# ----------------------------------------------------------------------------------------------
# The run.


def _map_frames(model: TinyViT, params: VitParams, tokens: Tensor) -> list[Frame]:
    """V, the embedded tokens and the attention on the shown digit, as float32 arrays."""
    g = grid_side(params)
    with torch.no_grad():
        x = model.embed(tokens)[0]  # (T+1, n)
        _, maps = model(tokens)
    full = [A[0, j].float().cpu().numpy() for A in maps for j in range(A.shape[1])]
    cls = [A[0, j, 0, 1:].reshape(g, g).float().cpu().numpy()
           for A in maps for j in range(A.shape[1])]
    return [
        restyle("embedding", [0, 1], z=[model.V.weight.detach().float().cpu().numpy(),
                                        x.float().cpu().numpy()]),
        restyle("attention", list(range(len(full))), z=full),
        restyle("cls_attention", list(range(len(cls))), z=cls),
    ]


def run(params: VitParams, ctx: RunContext) -> Iterator[Frame]:
    """Train the small ViT, streaming loss, held-out accuracy, V and the attention; check."""
    device, p = ctx.device, params.patch
    images, labels = digits()
    patches = patchify(torch.from_numpy(images), p).to(device)  # (N, T, q p²)
    y = torch.from_numpy(labels).to(device)
    train_x, train_y, test_x, test_y = patches[:TRAIN], y[:TRAIN], patches[TRAIN:], y[TRAIN:]
    shown = test_x[params.digit: params.digit + 1]
    model = build_model(params, ctx.seed, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    map_every = math.ceil(params.steps / MAP_UPDATES)
    curve_every = math.ceil(params.steps / CURVE_POINTS)
    accuracy_every = math.ceil(params.steps / ACCURACY_POINTS)

    model.eval()
    yield from _map_frames(model, params, shown)
    losses = []
    for step in range(1, params.steps + 1):
        if ctx.should_stop():
            return
        model.train()
        index = torch.randint(0, TRAIN, (BATCH,), generator=ctx.generator, device=device)
        loss = F.cross_entropy(model(train_x[index])[0], train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        model.eval()
        if step % curve_every == 0 or step == params.steps:
            mean_loss = float(torch.stack(losses).mean())
            losses.clear()
            frame = extend("training", [LOSS], x=[np.array([step])], y=[np.array([mean_loss])])
            frame.progress = (step, params.steps)
            frame.metrics = {"step": step, "loss": mean_loss}
            yield frame
        if step % accuracy_every == 0 or step == params.steps:
            with torch.no_grad():
                accuracy = float((model(test_x)[0].argmax(-1) == test_y).float().mean())
            frame = extend("training", [ACCURACY], x=[np.array([step])],
                           y=[np.array([accuracy])])
            frame.metrics = {"held_out_accuracy": accuracy}
            yield frame
        if step % map_every == 0 or step == params.steps:
            yield from _map_frames(model, params, shown)
    if ctx.should_stop():
        return

    with torch.no_grad():
        logits, maps = model(test_x)
    accuracy = float((logits.argmax(-1) == test_y).float().mean())
    image = torch.from_numpy(images[TRAIN + params.digit])  # (8, 8, 1)
    reassembly = float((unpatchify(patchify(image, p), p, SIDE, SIDE, CHANNELS) - image)
                       .abs().max())
    V = model.V.weight.detach().double()  # (n, q p²)
    tokens = patchify(image.double(), p).to(device) @ V.T  # (T, n): V vec(patch_t)
    conv = F.conv2d(image.double().permute(2, 0, 1)[None].to(device), conv_weight(V, p, CHANNELS),
                    stride=p)  # (1, n, H/p, W/p)
    conv_error = float((conv[0].flatten(1).T - tokens).abs().max())
    deviation = max(float((A.sum(-1) - 1).abs().max()) for A in maps)
    smallest = min(float(A.min()) for A in maps)
    T, n = tokens.shape
    checks = [
        Check(
            name="Patches reassemble to the image exactly",
            formula=r"\max\big|\mathrm{unpatchify}(\mathrm{patchify}(I)) - I\big| = 0",
            measured=reassembly, reference=0.0, relation="=", passed=reassembly == 0.0,
            detail=f"the {SIDE}×{SIDE}×{CHANNELS} digit as T = {T} tokens of qp² = "
            f"{CHANNELS * p * p} numbers each, and back.",
        ),
        Check(
            name="V vec(patch) = Conv2d(q, n, p, stride p)",
            formula=r"\max_t\big|V\operatorname{vec}(\text{patch}_t) - "
            r"\mathrm{conv2d}(I, V, \text{stride } p)_t\big| \le 10^{-12}",
            measured=conv_error, reference=CONV_TOL, relation="<=",
            passed=conv_error <= CONV_TOL and tuple(V.shape) == (n, CHANNELS * p * p),
            detail=f"the trained V ∈ ℝ^{{n×qp²}} = {n}×{CHANNELS * p * p} applied to each "
            f"vec'd patch against F.conv2d with V reshaped to ({n}, {CHANNELS}, {p}, {p}), "
            "float64, on the shown digit.",
        ),
        Check(
            name="Rows of A sum to 1, a_st ≥ 0",
            formula=r"\max_s\Big|\sum_t a_{st} - 1\Big| \le 10^{-5},\ a_{st} \ge 0",
            measured=deviation, reference=ROW_SUM_TOL, relation="<=",
            passed=deviation <= ROW_SUM_TOL and smallest >= 0,
            detail=f"every layer and head on the {len(test_y)} held-out digits (float32); "
            f"smallest entry {smallest:.3g}.",
        ),
        Check(
            name=f"Held-out accuracy ≥ {ACCURACY_TARGET:.0%}",
            formula=r"\frac{1}{N}\sum_i \mathbf{1}[\hat y_i = y_i] \ge 0.85",
            measured=accuracy, reference=ACCURACY_TARGET, relation=">=",
            detail=f"{len(test_y)} digits not trained on, after {params.steps} steps; the "
            f"default settings (p = 2, 300 steps) reach it"
            + ("" if accuracy >= ACCURACY_TARGET else
               "; with fewer steps or very large patches the small model may not"),
        ),
    ]
    yield finish(checks, held_out_accuracy=accuracy, tokens=T, embedding_rows=n,
                 embedding_columns=CHANNELS * p * p,
                 predicted=int(logits[params.digit].argmax()), label=int(test_y[params.digit]))


experiment = Experiment(
    slug="vit-patches",
    title="Vision transformer: patch embedding and attention over patches",
    section=Section("1.6", "Attention and transformers", chapter="1 History"),
    summary=(
        "A digit cut into p×p patches becomes a sequence of tokens x_t = V vec(patch_t) with "
        "V ∈ ℝ^{n×qp²}, a convolution of kernel and stride p. A small ViT trained live on the "
        "other digits shows its embedding V, the tokens and where its class token attends "
        "over the patch grid."
    ),
    formulas=FORMULAS,
    Params=VitParams,
    figures=figures,
    run=run,
)
