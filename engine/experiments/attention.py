r"""1.6.1 Attention: a tiny transformer trained live on a toy sequence task.

The cheat sheet, corrected per ERRATA.md (E-1.6-1, A-1.6-2), in the row convention of
:mod:`engine.experiments.transformer` (token :math:`x_t` is row t of X):

* attention mixing :math:`\xi_s = \sum_t a_{st} W x_t`, :math:`a_{st} \ge 0`,
  :math:`\sum_t a_{st} = 1`;
* query–key matching :math:`Q = XU_Q^\top`, :math:`K = XU_K^\top` with
  :math:`U_Q, U_K \in \mathbb R^{q\times n}`, so the scores :math:`QK^\top` (the sheet's
  :math:`Q^\top K`, T×T) have rank at most q;
* softmax attention :math:`A = \operatorname{softmax}(\beta QK^\top)`, usually
  :math:`\beta = 1/\sqrt q`; here :math:`\beta = \texttt{beta\_scale}/\sqrt q`;
* self-attention attends to every position of the same sequence; only causal (masked)
  self-attention restricts position s to :math:`t \le s` (A-1.6-2); cross-attention takes
  its queries from the decoder and its keys and values from the encoder;
* positional encoding :math:`p_{tk} = \sin(\omega_k t)` (k even), :math:`\cos(\omega_k t)`
  (k odd), :math:`\omega_k = C^{-2\lfloor k/2\rfloor/K}` (E-1.6-1), added to the embeddings.

References: Bahdanau, Cho & Bengio (2015); Vaswani et al., *Attention is all you need* (2017);
Olsson et al., *In-context learning and induction heads* (2022).

The run trains the model of :mod:`~engine.experiments.transformer` on a task of
:mod:`~engine.experiments.sequence_tasks` with Adam, streams loss and accuracy, and every few
steps the attention matrices of every layer and head on one fixed probe example, then checks
the attention algebra on the trained model. Its final frame carries the trained weights, so a
query can run the model on a sequence the user types (:func:`query`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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
    pack_state,
    restyle,
    unpack_state,
)
from engine.experiments import sequence_tasks as tasks
from engine.experiments.transformer import (
    ModelConfig,
    MultiHeadAttention,
    TinyTransformer,
    attend,
    init_parameters,
)

BATCH = 64  # training examples per step
EVAL_BATCH = 1024  # fresh examples for the final accuracy
CHECK_BATCH = 64  # examples for the algebra checks (float64)
ACCURACY_TARGET = 0.95  # token accuracy the default settings must reach (they reach 1.0)
MAP_UPDATES = 40  # attention-map frames per run, at most (plus the untrained maps)
CURVE_POINTS = 80  # loss/accuracy points per run, at most
ROW_SUM_TOL = 1e-5  # |Σ_t a_st − 1| for the float32 maps of the trained model
SDPA_TOL = 1e-12  # the engine's attention vs F.scaled_dot_product_attention, float64
EQUIVARIANCE_TOL = 1e-10  # f(PX) vs P f(X), float64
WORK_LIMIT = 12_000_000  # steps × layers × tokens × width: ~5 µs each on one CPU core
PROBE_SEED_OFFSET = 7919  # the probe comes from its own generator, seeded from the run's seed

FIGURE_OF = {"self": "attention", "decoder": "decoder_attention", "cross": "cross_attention"}
LOSS, ACCURACY = range(2)


class AttentionParams(Params):
    """The task, the transformer's shape, the attention's temperature and the budget."""

    task: Literal["copy", "reverse", "sort", "recall"] = Field(
        "reverse",
        description="What to learn. copy/reverse/sort: read T symbols, then answer at T blank "
        "slots with the input copied, reversed or sorted. recall: read T key–value pairs "
        "k₁ v₁ … k_T v_T, then answer T queried keys with their values (associative recall, "
        "the induction-head task; it learns in ~1000 steps with the causal mask on).",
    )
    architecture: Literal["encoder", "encoder-decoder"] = Field(
        "encoder",
        description="'encoder': input and answer slots form one sequence through the layers. "
        "'encoder-decoder': the input goes through an encoder, the slots through a decoder "
        "whose cross-attention takes queries from the decoder, keys and values from the "
        "encoder output.",
    )
    vocab: int = Field(10, ge=2, le=32, description="Vocabulary: V symbols 0 … V−1.")
    length: int = Field(
        8, ge=2, le=16,
        description="Sequence length T: symbols to copy/reverse/sort, or key–value pairs to "
        "recall (recall needs T distinct keys, so T ≤ V).",
    )
    layers: int = Field(2, ge=1, le=4, description="Transformer blocks (per stack).")
    width: int = Field(
        32, ge=8, le=64, multiple_of=4,
        description="Width n of the token vectors (d_model); each head's values have n/h.",
    )
    heads: int = Field(2, ge=1, le=4, description="Attention heads h per layer; must divide n.")
    q: int = Field(
        8, ge=1, le=32,
        description="Key/query width q per head: U_Q, U_K ∈ ℝ^{q×n}, so rank(QKᵀ) ≤ q.",
    )
    beta_scale: float = Field(
        1.0, ge=0.1, le=10.0,
        description="β = beta_scale / √q: 1 is the usual 1/√q; larger sharpens the softmax "
        "(lower temperature), smaller flattens it towards uniform attention.",
    )
    causal: bool = Field(
        False,
        description="Causal mask: position s attends only to t ≤ s (in the encoder–decoder, "
        "the decoder's self-attention; the encoder always sees the whole input).",
    )
    positional: Literal["sinusoidal", "learned", "none"] = Field(
        "sinusoidal",
        description="Positional encoding added to the embeddings: the sheet's sinusoids "
        "(C = 10⁴, K = n), a learned vector per position, or none (then self-attention "
        "cannot tell positions apart, and order-dependent tasks fail).",
    )
    steps: int = Field(400, ge=20, le=3000, description="Adam steps, 64 sequences each.")
    lr: float = Field(3e-3, ge=1e-4, le=3e-2, description="Adam learning rate η.")

    @field_validator("length")
    @classmethod
    def _keys_fit_the_vocabulary(cls, length: int, info: ValidationInfo) -> int:
        vocab = info.data.get("vocab")
        if info.data.get("task") == "recall" and vocab is not None and length > vocab:
            raise ValueError(
                f"recall needs T distinct keys out of V symbols, so length must be <= vocab, "
                f"got length={length}, vocab={vocab}"
            )
        return length

    @field_validator("heads")
    @classmethod
    def _heads_divide_width(cls, heads: int, info: ValidationInfo) -> int:
        width = info.data.get("width")
        if width is not None and width % heads:
            raise ValueError(
                f"heads must divide width (each head's values have width n/h), got "
                f"heads={heads}, width={width}"
            )
        return heads

    @field_validator("steps")
    @classmethod
    def _fits_the_time_limit(cls, steps: int, info: ValidationInfo) -> int:
        # A step costs about layers × tokens × width on the CPU (the linear maps dominate), so
        # this product, not each bound alone, is what keeps the largest runs within a minute.
        data = info.data
        if not all(k in data for k in ("task", "architecture", "length", "layers", "width")):
            return steps
        layers = data["layers"] * (2 if data["architecture"] == "encoder-decoder" else 1)
        per_step = layers * tasks.sequence_length(data["task"], data["length"]) * data["width"]
        if steps * per_step > WORK_LIMIT:
            raise ValueError(
                f"{steps} steps of this model is more work than one run may do: steps × layers "
                f"× tokens × width = {steps} × {layers} × "
                f"{tasks.sequence_length(data['task'], data['length'])} × {data['width']} = "
                f"{steps * per_step:.3g} > {WORK_LIMIT:.3g} (about a minute on one CPU core); "
                f"use at most {WORK_LIMIT // per_step} steps, or a smaller model"
            )
        return steps


# ----------------------------------------------------------------------------------------------
# The model and its examples.


def beta(params: AttentionParams) -> float:
    r""":math:`\beta = \texttt{beta\_scale}/\sqrt q`."""
    return params.beta_scale / math.sqrt(params.q)


def model_config(params: AttentionParams) -> ModelConfig:
    if params.architecture == "encoder":
        max_len = tasks.sequence_length(params.task, params.length)
    else:
        max_len = tasks.src_length(params.task, params.length)
    return ModelConfig(
        tokens=tasks.token_count(params.vocab), classes=params.vocab, n=params.width,
        heads=params.heads, q=params.q, layers=params.layers, max_len=max_len,
        beta=beta(params), causal=params.causal, positional=params.positional,
        architecture=params.architecture,
    )


def build_model(params: AttentionParams, seed: int | None = None,
                device: torch.device | str = "cpu") -> TinyTransformer:
    """The model of these params, initialised from ``seed`` (None: left for loaded weights)."""
    model = TinyTransformer(model_config(params))
    if seed is not None:
        init_parameters(model, torch.Generator().manual_seed(seed))
    return model.to(device)


def probe_example(params: AttentionParams) -> tasks.Batch:
    """The one example whose attention maps the run streams; a function of the params, so
    the initial figures can label their axes with its tokens."""
    generator = torch.Generator().manual_seed(params.seed + PROBE_SEED_OFFSET)
    return tasks.sample(params.task, 1, params.length, params.vocab, generator)


def token_labels(params: AttentionParams, example: tasks.Batch) -> tuple[list[str], list[str]]:
    """Axis labels of the input tokens and of the answer slots of a one-example batch."""
    src, slots = example.src[0].tolist(), example.slots[0].tolist()
    shown = tasks.labels(params.task, src, slots, params.vocab)
    return shown[: len(src)], shown[len(src):]


def capture_attention(model: TinyTransformer, src: torch.Tensor,
                      slots: torch.Tensor) -> list[tuple[str, MultiHeadAttention, tuple]]:
    """Run the model once and record each attention module with its inputs (x, memory,
    causal), in order: the encoder stack's layers, then per decoder layer its self- and
    cross-attention. Kinds: 'self', 'decoder', 'cross'."""
    kinds = {}
    for block in model.encoder:
        kinds[block.attn] = "self"
    for block in getattr(model, "decoder", []):
        kinds[block.attn], kinds[block.cross] = "decoder", "cross"
    records, handles = [], []
    for module, kind in kinds.items():
        def hook(module, args, output, kind=kind):
            causal = bool(args[3]) if len(args) > 3 else False
            records.append((kind, module, (args[0], args[1], causal)))
        handles.append(module.register_forward_hook(hook))
    try:
        model(src, slots)
    finally:
        for handle in handles:
            handle.remove()
    return records


# ----------------------------------------------------------------------------------------------
# Figures.

FORMULAS = (
    Formula(
        "Attention mixing",
        r"\xi_s = \sum_t a_{st} W x_t,\quad a_{st} \ge 0,\quad \sum_t a_{st} = 1",
    ),
    Formula(
        "Query–key matching",
        r"Q = U_Q X,\ K = U_K X,\ U_Q, U_K \in \mathbb{R}^{q \times n}:\quad"
        r" \operatorname{rank}(Q^\top K) \le q",
    ),
    Formula(
        "Softmax attention",
        r"A = \operatorname{softmax}(\beta Q^\top K),\quad"
        r" a_{st} = \frac{e^{\beta [Q^\top K]_{st}}}{\sum_r e^{\beta [Q^\top K]_{sr}}},"
        r"\quad \beta = \frac{1}{\sqrt{q}}",
    ),
    Formula(
        "Causal self-attention",
        r"a_{st} = 0 \text{ for } t > s \text{ (masked); plain self-attention sees every } t",
        erratum="A-1.6-2",
    ),
    Formula(
        "Cross-attention",
        r"A = \operatorname{softmax}\big(\beta\, Q_{\text{dec}}^\top K_{\text{enc}}\big),"
        r"\quad \xi_s = \sum_t a_{st} W x^{\text{enc}}_t",
    ),
    Formula(
        "Positional encoding",
        r"p_{tk} = \begin{cases}\sin(\omega_k t), & k \text{ even}\\ \cos(\omega_k t), & "
        r"k \text{ odd}\end{cases},\quad \omega_k = C^{-2\lfloor k/2 \rfloor/K}",
        erratum="E-1.6-1",
    ),
    Formula(
        "Feature transformation",
        r"X \mapsto \Xi \mapsto F(\Xi),\quad F(\Xi) = (F(\xi_1), \dots, F(\xi_T))",
    ),
)


def map_layout(params: AttentionParams) -> dict[str, tuple[str, str]]:
    """Figure name → (query labels key, key labels key) for this architecture: 'all' is the
    input followed by the slots, 'src' the input, 'slots' the slots."""
    if params.architecture == "encoder":
        return {FIGURE_OF["self"]: ("all", "all")}
    return {FIGURE_OF["self"]: ("src", "src"), FIGURE_OF["decoder"]: ("slots", "slots"),
            FIGURE_OF["cross"]: ("slots", "src")}


def attention_figure(params: AttentionParams, title: str, rows: list[str],
                     columns: list[str]) -> go.Figure:
    """One heat-map per layer (row) and head (column), empty until a frame sets its z.

    x is the key position t, y the query position s (row s of A at the top, as a matrix);
    both axes are labelled with the tokens.
    """
    L, h = params.layers, params.heads
    fig = make_subplots(
        rows=L, cols=h, horizontal_spacing=0.04, vertical_spacing=0.08 if L > 1 else 0.0,
        subplot_titles=[f"layer {i + 1} · head {j + 1}" for i in range(L) for j in range(h)],
    )
    for i in range(L):
        for j in range(h):
            fig.add_trace(
                go.Heatmap(z=[], coloraxis="coloraxis", name=f"A layer {i + 1} head {j + 1}",
                           hovertemplate="query %{y} → key %{x}: a = %{z:.3f}<extra></extra>"),
                row=i + 1, col=j + 1,
            )
    tick = dict(tickfont=dict(size=9), showgrid=False)
    fig.update_xaxes(tickvals=list(range(len(columns))), ticktext=columns, **tick)
    fig.update_yaxes(tickvals=list(range(len(rows))), ticktext=rows, autorange="reversed",
                     **tick)
    fig.update_layout(
        title=title, height=160 + 230 * L,
        coloraxis=dict(cmin=0.0, cmax=1.0, colorscale="Viridis",
                       colorbar=dict(title=dict(text="a_st"))),
    )
    return fig


MAP_TITLES = {
    "attention": "Self-attention A = softmax(βQKᵀ): row s = query position, column t = key",
    "decoder_attention": "Decoder self-attention over the answer slots",
    "cross_attention": "Cross-attention: queries from the decoder (rows), keys from the "
                       "encoder (columns)",
}


def map_figures(params: AttentionParams, example: tasks.Batch) -> dict[str, go.Figure]:
    src, slots = token_labels(params, example)
    labels = {"all": src + slots, "src": src, "slots": slots}
    figs = {}
    for name, (rows, columns) in map_layout(params).items():
        title = MAP_TITLES[name]
        if name == "attention" and params.architecture == "encoder-decoder":
            title = "Encoder self-attention over the input"
        if params.causal and name == FIGURE_OF[masked_kind(params)]:
            title += " (causal: zero above the diagonal)"
        figs[name] = attention_figure(params, title, labels[rows], labels[columns])
    return figs


def answer_grid(params: AttentionParams, example: tasks.Batch,
                output: torch.Tensor | None) -> tuple[np.ndarray, list[list[str]]]:
    """The input, expected and model-output rows of one example as a colour grid (3, C) and
    its text: 0.5 for given tokens, 1 for a correct answer, 0 for a wrong one, NaN empty."""
    src, slots = token_labels(params, example)
    target = [str(t) for t in example.target[0].tolist()]
    width = max(len(src), len(target))
    z = np.full((3, width), np.nan, dtype=np.float32)
    text = [[""] * width for _ in range(3)]
    z[0, : len(src)] = 0.5
    text[0][: len(src)] = src
    z[1, : len(target)] = 0.5
    text[1][: len(target)] = [f"{s}→{t}" if s.startswith("?") else t
                              for s, t in zip(slots, target, strict=True)]
    if output is not None:
        answer = output[0].tolist()
        z[2, : len(answer)] = (output[0] == example.target[0]).float().cpu().numpy()
        text[2][: len(answer)] = [str(a) for a in answer]
    return z, text


def answer_figure(params: AttentionParams, example: tasks.Batch, title: str) -> go.Figure:
    z, text = answer_grid(params, example, None)
    return go.Figure(
        go.Heatmap(
            z=z, text=text, texttemplate="%{text}", y=["input", "expected", "model output"],
            zmin=0.0, zmax=1.0, showscale=False, xgap=2, ygap=2, hoverinfo="skip",
            colorscale=[[0.0, "#f4a3a3"], [0.5, "#e8e8e8"], [1.0, "#9fd89f"]],
        ),
        layout=dict(title=title, height=260, xaxis=dict(title="position", dtick=1),
                    yaxis=dict(autorange="reversed")),
    )


def figures(params: AttentionParams) -> dict[str, go.Figure]:
    """Loss and accuracy, the probe's answer, and the attention maps on the probe."""
    example = probe_example(params)
    training = go.Figure(
        [
            go.Scatter(x=[], y=[], name="cross-entropy loss", mode="lines",
                       line=dict(color="#1f77b4")),
            go.Scatter(x=[], y=[], name="token accuracy (training batch)", mode="lines",
                       yaxis="y2", line=dict(color="#2ca02c")),
        ],
        layout=dict(
            title=f"Training on {params.task}: loss and accuracy",
            xaxis=dict(title="step"),
            yaxis=dict(title="loss", type="log"),
            yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1.02]),
        ),
    )
    probe = answer_figure(params, example, "The probe sequence: expected answer and the "
                                           "model's (green right, red wrong)")
    return {"training": training, "probe": probe, **map_figures(params, example)}


# ----------------------------------------------------------------------------------------------
# Frames.


def _map_frames(model: TinyTransformer, params: AttentionParams, example: tasks.Batch,
                answers: str = "probe") -> list[Frame]:
    """The attention maps of every layer and head on ``example`` (float32 arrays, one
    restyle per figure) and the model's answer to it (on figure ``answers``)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, maps = model(example.src, example.slots)
    model.train(was_training)
    frames = []
    for kind, per_layer in maps.items():
        z = [A[0, j].float().cpu().numpy() for A in per_layer for j in range(A.shape[1])]
        frames.append(restyle(FIGURE_OF[kind], list(range(len(z))), z=z))
    grid, text = answer_grid(params, example, logits.argmax(-1))
    frames.append(restyle(answers, [0], z=[grid], text=[text]))
    return frames


def _on_device(batch: tasks.Batch, device: torch.device) -> tasks.Batch:
    return tasks.Batch(batch.src.to(device), batch.slots.to(device), batch.target.to(device))


def run(params: AttentionParams, ctx: RunContext) -> Iterator[Frame]:
    """Train with Adam, streaming loss/accuracy and the probe's attention maps; then check."""
    device = ctx.device
    model = build_model(params, seed=ctx.seed, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    probe = _on_device(probe_example(params), device)
    V, steps = params.vocab, params.steps
    map_every = math.ceil(steps / MAP_UPDATES)
    curve_every = math.ceil(steps / CURVE_POINTS)

    yield from _map_frames(model, params, probe)
    loss_sum = torch.zeros((), device=device)
    correct_sum = torch.zeros((), device=device)
    window = 0
    for step in range(1, steps + 1):
        if ctx.should_stop():
            return
        batch = tasks.sample(params.task, BATCH, params.length, V, ctx.generator, device)
        logits, _ = model(batch.src, batch.slots)  # (B, T_out, V)
        loss = F.cross_entropy(logits.reshape(-1, V), batch.target.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        correct_sum += (logits.detach().argmax(-1) == batch.target).float().mean()
        window += 1
        if step % curve_every == 0 or step == steps:
            mean_loss, accuracy = float(loss_sum) / window, float(correct_sum) / window
            frame = extend("training", [LOSS, ACCURACY], x=[np.array([step])] * 2,
                           y=[np.array([mean_loss]), np.array([accuracy])])
            frame.progress = (step, steps)
            frame.metrics = {"step": step, "train_loss": mean_loss, "train_accuracy": accuracy}
            yield frame
            loss_sum.zero_()
            correct_sum.zero_()
            window = 0
        if step % map_every == 0 or step == steps:
            yield from _map_frames(model, params, probe)
    if ctx.should_stop():
        return

    model.eval()
    evaluation = tasks.sample(params.task, EVAL_BATCH, params.length, V, ctx.generator, device)
    with torch.no_grad():
        _, maps = model(evaluation.src[:CHECK_BATCH], evaluation.slots[:CHECK_BATCH])
        logits, _ = model(evaluation.src, evaluation.slots)
        eval_loss = float(F.cross_entropy(logits.reshape(-1, V), evaluation.target.reshape(-1)))
    right = logits.argmax(-1) == evaluation.target
    accuracy = float(right.float().mean())
    checks = [
        row_stochastic_check(params, maps, f"{CHECK_BATCH} fresh examples"),
        *algebra_checks(params, model, evaluation, CHECK_BATCH, f"{CHECK_BATCH} fresh examples"),
        equivariance_check(params, model, evaluation, ctx.generator),
        accuracy_check(params, accuracy, evaluation),
    ]
    yield finish(
        checks,
        artifact=pack_state(model.state_dict()),
        accuracy=accuracy,
        sequence_accuracy=float(right.all(dim=1).float().mean()),
        held_out_loss=eval_loss,
        beta=beta(params),
        parameters=sum(p.numel() for p in model.parameters()),
    )


# ----------------------------------------------------------------------------------------------
# Checks.


def masked_kind(params: AttentionParams) -> str:
    """The self-attention the causal mask applies to: the one stack, or the decoder's."""
    return "self" if params.architecture == "encoder" else "decoder"


def row_stochastic_check(params: AttentionParams, maps: dict[str, list[torch.Tensor]],
                         source: str) -> Check:
    """Rows of every A are probability vectors; with the mask, zero above the diagonal.
    ``source`` says what the maps were computed on, for the detail."""
    all_maps = [A for per_layer in maps.values() for A in per_layer]
    deviation = max(float((A.sum(-1) - 1).abs().max()) for A in all_maps)
    smallest = min(float(A.min()) for A in all_maps)
    masked = maps[masked_kind(params)] if params.causal else []
    above = max((float(A.triu(1).abs().max()) for A in masked), default=0.0)
    count = sum(A.shape[0] * A.shape[1] for A in all_maps)
    mask_text = (f"; causal: the largest a_st above the diagonal is {above:g} (must be "
                 "exactly 0)" if masked else "")
    return Check(
        name="Rows of A sum to 1, a_st ≥ 0" + (", 0 above the diagonal" if masked else ""),
        formula=r"\max_s \Big|\sum_t a_{st} - 1\Big| \le 10^{-5},\ a_{st} \ge 0"
        + (r",\ a_{st} = 0\ (t > s)" if masked else ""),
        measured=deviation,
        reference=ROW_SUM_TOL,
        relation="<=",
        passed=deviation <= ROW_SUM_TOL and smallest >= 0 and above == 0,
        detail=f"{count} attention matrices (every layer, head and kind on {source}, float32): "
        f"the smallest entry is {smallest:.3g}{mask_text}.",
    )


def algebra_checks(params: AttentionParams, model: TinyTransformer, batch: tasks.Batch,
                   size: int, source: str) -> list[Check]:
    """rank(QKᵀ) ≤ q, and the engine's softmax attention = F.scaled_dot_product_attention,
    on every layer and head of the trained model in float64 (the inputs each attention
    layer really receives, captured with hooks), for the first ``size`` examples of
    ``batch`` (described by ``source``)."""
    model64 = copy.deepcopy(model).double().eval()
    b = beta(params)
    ranks, errors, shapes = [], [], set()
    with torch.no_grad():
        for _, module, (x, memory, causal) in capture_attention(
                model64, batch.src[:size], batch.slots[:size]):
            Q, K, V = module.project(x, memory)
            out, _, scores = attend(Q, K, V, b, causal)
            reference = F.scaled_dot_product_attention(Q, K, V, is_causal=causal, scale=b)
            errors.append(float((out - reference).abs().max()))
            ranks.append(int(torch.linalg.matrix_rank(scores).max()))
            shapes.add(tuple(scores.shape[-2:]))
    rank, error = max(ranks), max(errors)
    smallest_side = min(min(s) for s in shapes)
    sizes = " and ".join(f"{s}×{t}" for s, t in sorted(shapes))
    binding = ("so the bound is what keeps it below full rank" if params.q < smallest_side
               else f"so here the bound is not binding (q ≥ {smallest_side}); pick q < "
               f"{smallest_side} to see it bite")
    return [
        Check(
            name="rank(QKᵀ) ≤ q",
            formula=r"\operatorname{rank}(Q^\top K) = \operatorname{rank}(X^\top U_Q^\top U_K X)"
            r" \le q",
            measured=rank,
            reference=params.q,
            relation="<=",
            passed=rank <= params.q,
            detail=f"largest numerical rank (torch.linalg.matrix_rank, float64) of the "
            f"pre-softmax scores of {len(ranks)} attention layers × {params.heads} heads on "
            f"{source}; the score matrices are {sizes}, {binding}.",
        ),
        Check(
            name="Engine attention = F.scaled_dot_product_attention",
            formula=r"\max\big|\operatorname{softmax}(\beta QK^\top)V - "
            r"\mathrm{SDPA}(Q, K, V; \beta)\big| \le 10^{-12}",
            measured=error,
            reference=SDPA_TOL,
            relation="<=",
            passed=error <= SDPA_TOL,
            detail=f"the written-out A = softmax(βQKᵀ), AV against torch's fused kernel with "
            f"scale β = {b:.4g}" + (" and is_causal" if params.causal else "")
            + f", on the Q, K, V of every layer and head of the trained model (float64) on "
            f"{source}.",
        ),
    ]


def equivariance_check(params: AttentionParams, model: TinyTransformer, batch: tasks.Batch,
                       generator: torch.Generator) -> Check:
    r"""Without positional encoding and mask, the trained (self-attention) stack is
    permutation-equivariant: :math:`f(PX) = P f(X)`. The same stack with the positions added,
    or with the causal mask, is not (reported as negative controls)."""
    model64 = copy.deepcopy(model).double().eval()
    tokens = batch.src[:CHECK_BATCH]
    if params.architecture == "encoder":
        tokens = torch.cat([tokens, batch.slots[:CHECK_BATCH]], dim=1)
    T = tokens.shape[1]
    perm = torch.randperm(T, generator=generator, device=generator.device).to(tokens.device)

    def error(positional: bool, causal: bool) -> float:
        x = model64.embed_tokens(tokens, positional=positional)  # (B, T, n)
        x_perm = model64.embed_tokens(tokens[:, perm], positional=positional)
        out = model64.encode(x, causal)[0]
        return float((model64.encode(x_perm, causal)[0] - out[:, perm]).abs().max())

    with torch.no_grad():
        plain = error(positional=False, causal=False)
        with_mask = error(positional=False, causal=True)
        with_positions = error(positional=True, causal=False) \
            if params.positional != "none" else None
    stack = "the trained model's layers" if params.architecture == "encoder" \
        else "the trained encoder's layers"
    controls = f"with the causal mask it is off by {with_mask:.3g}"
    if with_positions is not None:
        controls += f", with the {params.positional} positions added by {with_positions:.3g}"
    return Check(
        name="No positional encoding: self-attention is permutation-equivariant",
        formula=r"\max\big|f(PX) - P f(X)\big| \le 10^{-10}",
        measured=plain,
        reference=EQUIVARIANCE_TOL,
        relation="<=",
        passed=plain <= EQUIVARIANCE_TOL,
        detail=f"f = {stack} (self-attention, LayerNorm and MLP, float64) on token "
        f"embeddings without positional encoding and without mask; P a random permutation of "
        f"the {T} tokens of {CHECK_BATCH} examples. Negative controls: {controls}.",
    )


def constant_answer_accuracy(params: AttentionParams, batch: tasks.Batch) -> float:
    """The accuracy of the best answer that is the same at every slot: per example, the most
    frequent target symbol. A model that cannot tell the slots apart can do no better."""
    counts = F.one_hot(batch.target, params.vocab).sum(dim=1)  # (B, V)
    return float(counts.max(dim=1).values.float().mean() / batch.target.shape[1])


def accuracy_check(params: AttentionParams, accuracy: float, batch: tasks.Batch) -> Check:
    passed = accuracy >= ACCURACY_TARGET
    detail = (f"token accuracy on {len(batch.target)} fresh examples after {params.steps} steps "
              f"(target {ACCURACY_TARGET:.0%}; the default settings, reverse in 400 steps, "
              "reach 100%).")
    if not passed:
        constant = constant_answer_accuracy(params, batch)
        if params.positional == "none" and not params.causal:
            detail += (
                " Without a positional encoding the answer slots are identical tokens and "
                "self-attention is permutation-equivariant (checked here), so every slot gets "
                "the same answer; the best such answer, each example's most frequent symbol, "
                f"scores {constant:.2f}. Every one of these tasks depends on order: it needs "
                "positions."
            )
        elif params.positional == "none":
            detail += (
                " Without a positional encoding only the causal mask breaks the symmetry "
                "between positions (a token can tell how much past it averages over), which "
                f"is a weak signal: a constant answer would score {constant:.2f}."
            )
        elif params.task == "recall" and not params.causal:
            detail += (" Bidirectional recall tends to stall; with the causal mask on it "
                       "learns within about 1000 steps (an induction circuit: a head that "
                       "looks one token back, then one that matches the key).")
        else:
            detail += " More steps or another learning rate should get there."
    return Check(
        name=f"Accuracy ≥ {ACCURACY_TARGET:.0%} on {params.task}",
        formula=r"\frac{1}{N T}\sum_{i,s} \mathbf{1}[\hat y_{is} = y_{is}] \ge 0.95",
        measured=accuracy,
        reference=ACCURACY_TARGET,
        relation=">=",
        passed=passed,
        detail=detail,
    )


# ----------------------------------------------------------------------------------------------
# Queries: the trained model on a sequence the user types.

_SEPARATORS = re.compile(r"[\s,;]+")


def parse_symbols(text: str, field: str, vocab: int | None = None) -> list[int]:
    """'3 1 4, 1' → [3, 1, 4, 1], each a symbol below ``vocab``."""
    symbols = []
    for item in _SEPARATORS.split(text.strip()):
        if not item:
            continue
        if not re.fullmatch(r"\d+", item):
            raise ValueError(f"{field} must be whole numbers separated by spaces, got {item!r}")
        symbol = int(item)
        if vocab is not None and symbol >= vocab:
            raise ValueError(f"{field}: symbol {symbol} is outside this run's vocabulary "
                             f"0 … {vocab - 1}")
        symbols.append(symbol)
    return symbols


class AttentionQuery(BaseModel):
    """A sequence for the trained model, checked against the run's params (vocabulary,
    length, task) when validated with ``context={"params": params}``."""

    model_config = ConfigDict(extra="forbid")

    tokens: str = Field(
        max_length=400, examples=["3 1 4 1 5 9 2 6"],
        description="The input: symbols 0 … V−1 separated by spaces, as many as the run "
        "trained on (T), e.g. '3 1 4 1 5 9 2 6'; for recall the T key–value pairs "
        "k₁ v₁ k₂ v₂ … with distinct keys.",
    )
    queries: str = Field(
        "", max_length=200,
        description="recall only: the T keys to look up (empty: the keys in the order given).",
    )

    @field_validator("tokens")
    @classmethod
    def _tokens_fit_the_run(cls, tokens: str, info: ValidationInfo) -> str:
        params = (info.context or {}).get("params")
        symbols = parse_symbols(tokens, "tokens", params.vocab if params else None)
        if params is None:
            return " ".join(map(str, symbols))
        expected = tasks.src_length(params.task, params.length)
        if len(symbols) != expected:
            what = (f"{params.length} key–value pairs ({expected} symbols)"
                    if params.task == "recall" else f"{expected} symbols")
            raise ValueError(f"tokens: this run was trained on {what}, got {len(symbols)}")
        if params.task == "recall":
            keys = symbols[0::2]
            repeated = sorted({k for k in keys if keys.count(k) > 1})
            if repeated:
                raise ValueError(f"tokens: the keys k₁, k₂, … (every other symbol, from the "
                                 f"first) must be distinct; repeated: {repeated}")
        return " ".join(map(str, symbols))

    @field_validator("queries")
    @classmethod
    def _queries_are_keys(cls, queries: str, info: ValidationInfo) -> str:
        params = (info.context or {}).get("params")
        symbols = parse_symbols(queries, "queries", params.vocab if params else None)
        if params is None or not symbols:
            return " ".join(map(str, symbols))
        if params.task != "recall":
            raise ValueError(f"queries are for the recall task; this run learnt {params.task}")
        if len(symbols) != params.length:
            raise ValueError(f"queries: this run answered {params.length} queries per "
                             f"sequence, got {len(symbols)}")
        tokens = info.data.get("tokens")
        if tokens is not None:
            keys = set(parse_symbols(tokens, "tokens")[0::2])
            unknown = sorted({k for k in symbols if k not in keys})
            if unknown:
                raise ValueError(f"queries: {unknown} not among the keys {sorted(keys)}")
        return " ".join(map(str, symbols))


def query_example(params: AttentionParams, query: AttentionQuery) -> tasks.Batch:
    """The query as a one-example batch (recall without queries asks the keys in order)."""
    x = parse_symbols(query.tokens, "tokens")
    asked = parse_symbols(query.queries, "queries") or (x[0::2] if params.task == "recall"
                                                        else None)
    return tasks.example(params.task, x, params.vocab, asked)


def query_figures(params: AttentionParams, query: AttentionQuery) -> dict[str, go.Figure]:
    """The model's answer beside the expected one, and its attention maps on the query."""
    example = query_example(params, query)
    title = f"Your sequence: expected {params.task} and the trained model's answer"
    return {"output": answer_figure(params, example, title),
            **map_figures(params, example)}


def query(params: AttentionParams, query: AttentionQuery, artifact: bytes,
          ctx: RunContext) -> Iterator[Frame]:
    """Rebuild the run's model, load its weights, run it on the query, show and check."""
    query = AttentionQuery.model_validate(query.model_dump(), context={"params": params})
    model = build_model(params, device=ctx.device)
    model.load_state_dict(unpack_state(artifact, ctx.device))
    model.eval()
    example = _on_device(query_example(params, query), ctx.device)
    yield from _map_frames(model, params, example, answers="output")
    with torch.no_grad():
        logits, maps = model(example.src, example.slots)
    output = logits.argmax(-1)
    right = int((output == example.target).sum())
    checks = [row_stochastic_check(params, maps, "your sequence"),
              *algebra_checks(params, model, example, 1, "your sequence")]
    yield finish(
        checks,
        output=" ".join(map(str, output[0].tolist())),
        expected=" ".join(map(str, example.target[0].tolist())),
        correct=right,
        accuracy=right / example.target.shape[1],
    )


experiment = Experiment(
    slug="attention",
    title="Attention maps: a tiny transformer learns to copy, reverse, sort and recall",
    section=Section("1.6", "Attention and transformers", chapter="1 History"),
    summary=(
        "Train a small transformer, with its attention A = softmax(βQKᵀ) written out, on a toy "
        "sequence task and watch every layer's and head's attention matrix form over the "
        "tokens: the anti-diagonal of reverse, the look-up of associative recall. Switch the "
        "causal mask, the positional encoding (sinusoidal, learned, none), the temperature β "
        "or an encoder–decoder with cross-attention. The checks: rows of A sum to 1, "
        "rank(QKᵀ) ≤ q, the engine equals torch's fused attention, self-attention without "
        "positions is permutation-equivariant, and the model reaches 95% accuracy. After the "
        "run, type a sequence and see the trained model's answer and attention."
    ),
    formulas=FORMULAS,
    Params=AttentionParams,
    figures=figures,
    run=run,
    Query=AttentionQuery,
    query_figures=query_figures,
    query=query,
)
