r"""1.6 A tiny transformer whose attention matrices are written out, so they can be shown.

The cheat sheet (corrected per ERRATA.md E-1.6-1, A-1.6-2) in the row convention used here:
a sequence is a matrix :math:`X \in \mathbb R^{T\times n}` (row t is token :math:`x_t`, the
sheet's columns), and each head has :math:`U_Q, U_K \in \mathbb R^{q\times n}`:

.. math:: Q = X U_Q^\top,\quad K = X U_K^\top,\quad
          A = \operatorname{softmax}(\beta\,QK^\top),\quad
          a_{st} = \frac{e^{\beta[QK^\top]_{st}}}{\sum_r e^{\beta[QK^\top]_{sr}}},
          \quad \beta = 1/\sqrt q \text{ usually},

so :math:`QK^\top` is the sheet's :math:`Q^\top K = X^\top U_Q^\top U_K X` (rank :math:`\le q`),
row s of A says how much position s attends to each position t, and the head's output is the
mixing :math:`\xi_s = \sum_t a_{st} W x_t` (:math:`\Xi = A\,XW^\top`, the sheet's
:math:`WXA^\top` transposed). A causal mask sets :math:`a_{st} = 0` for :math:`t > s`
(self-attention restricted to the past, A-1.6-2); cross-attention takes its queries from one
sequence (the decoder) and its keys and values from another (the encoder output).

Nothing here is ``nn.MultiheadAttention``: :func:`attend` is the formula, and every layer
returns its A. Blocks are pre-LayerNorm (GPT-2), with a position-wise GELU MLP
:math:`F(\Xi) = (F(\xi_1), \dots, F(\xi_T))`. Parameters are initialised from an explicit
``torch.Generator`` (:func:`init_parameters`), so a seed fixes the model on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Positional = Literal["sinusoidal", "learned", "none"]
Architecture = Literal["encoder", "encoder-decoder"]
PE_BASE = 10_000.0  # C of the sinusoidal encoding (Vaswani et al. 2017)


def attend(Q: Tensor, K: Tensor, V: Tensor, beta: float,
           causal: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r""":math:`A = \operatorname{softmax}(\beta QK^\top)` and :math:`AV`, written out.

    Q: (..., S, q), K: (..., T, q), V: (..., T, d). Returns the output (..., S, d), A (..., S, T)
    and the pre-softmax scores :math:`QK^\top` (..., S, T). The causal mask (needs S = T) puts
    :math:`-\infty` above the diagonal, so those :math:`a_{st}` are exactly 0.
    """
    scores = Q @ K.transpose(-2, -1)  # (..., S, T)
    logits = beta * scores
    if causal:
        S, T = scores.shape[-2:]
        future = torch.ones(S, T, dtype=torch.bool, device=Q.device).triu(1)
        logits = logits.masked_fill(future, float("-inf"))
    A = torch.softmax(logits, dim=-1)
    return A @ V, A, scores


def sinusoidal_encoding(positions: int, K: int, C: float = PE_BASE,
                        dtype: torch.dtype = torch.float32) -> Tensor:
    r"""The table :math:`p_{tk}`, (positions, K): :math:`\sin(\omega_k t)` for even k,
    :math:`\cos(\omega_k t)` for odd k, :math:`\omega_k = C^{-2\lfloor k/2\rfloor/K}` (E-1.6-1)."""
    t = torch.arange(positions, dtype=torch.float64)[:, None]  # (P, 1)
    k = torch.arange(K)
    omega = C ** (-2 * torch.div(k, 2, rounding_mode="floor").double() / K)  # (K,)
    angle = t * omega  # (P, K)
    p = torch.where(k % 2 == 0, torch.sin(angle), torch.cos(angle))
    return p.to(dtype)


class MultiHeadAttention(nn.Module):
    """h heads of :func:`attend`: keys and queries of width q, values of width n/h, then
    the heads side by side through :math:`W_O` back to width n."""

    def __init__(self, n: int, heads: int, q: int) -> None:
        super().__init__()
        if n % heads:
            raise ValueError(f"heads must divide the width: {heads} heads, width {n}")
        self.heads, self.q, self.d = heads, q, n // heads
        self.U_Q = nn.Linear(n, heads * q, bias=False)
        self.U_K = nn.Linear(n, heads * q, bias=False)
        self.U_V = nn.Linear(n, n, bias=False)
        self.W_O = nn.Linear(n, n, bias=False)

    def project(self, x: Tensor, memory: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries from x (B, S, n), keys and values from memory (B, T, n), split by head:
        Q (B, h, S, q), K (B, h, T, q), V (B, h, T, n/h)."""
        B, S, _ = x.shape
        T = memory.shape[1]
        Q = self.U_Q(x).view(B, S, self.heads, self.q).transpose(1, 2)
        K = self.U_K(memory).view(B, T, self.heads, self.q).transpose(1, 2)
        V = self.U_V(memory).view(B, T, self.heads, self.d).transpose(1, 2)
        return Q, K, V

    def forward(self, x: Tensor, memory: Tensor, beta: float,
                causal: bool = False) -> tuple[Tensor, Tensor]:
        """Output (B, S, n) and the attention matrices A (B, h, S, T)."""
        Q, K, V = self.project(x, memory)
        out, A, _ = attend(Q, K, V, beta, causal)  # (B, h, S, n/h)
        B, _, S, _ = out.shape
        return self.W_O(out.transpose(1, 2).reshape(B, S, -1)), A


class FeedForward(nn.Sequential):
    """The position-wise MLP F: n → 4n → n with GELU, the same on every token."""

    def __init__(self, n: int) -> None:
        super().__init__(nn.Linear(n, 4 * n), nn.GELU(), nn.Linear(4 * n, n))


class EncoderBlock(nn.Module):
    """x ← x + MHA(LN x); x ← x + F(LN x)."""

    def __init__(self, n: int, heads: int, q: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(n), MultiHeadAttention(n, heads, q)
        self.ln2, self.ffn = nn.LayerNorm(n), FeedForward(n)

    def forward(self, x: Tensor, beta: float, causal: bool) -> tuple[Tensor, Tensor]:
        h = self.ln1(x)
        mixed, A = self.attn(h, h, beta, causal)
        x = x + mixed
        return x + self.ffn(self.ln2(x)), A


class DecoderBlock(nn.Module):
    """Self-attention over the decoder (masked if causal), cross-attention with queries from
    the decoder and keys and values from the encoder output, then F."""

    def __init__(self, n: int, heads: int, q: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(n), MultiHeadAttention(n, heads, q)
        self.ln_cross, self.cross = nn.LayerNorm(n), MultiHeadAttention(n, heads, q)
        self.ln2, self.ffn = nn.LayerNorm(n), FeedForward(n)

    def forward(self, y: Tensor, memory: Tensor, beta: float,
                causal: bool) -> tuple[Tensor, Tensor, Tensor]:
        h = self.ln1(y)
        mixed, A_self = self.attn(h, h, beta, causal)
        y = y + mixed
        mixed, A_cross = self.cross(self.ln_cross(y), memory, beta)
        y = y + mixed
        return y + self.ffn(self.ln2(y)), A_self, A_cross


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a :class:`TinyTransformer`."""

    tokens: int  # embedding rows: the symbols plus special tokens
    classes: int  # output symbols
    n: int  # width (d_model)
    heads: int
    q: int  # key/query width per head
    layers: int  # per stack
    max_len: int  # longest sequence a stack sees
    beta: float
    causal: bool = False
    positional: Positional = "sinusoidal"
    architecture: Architecture = "encoder"


class TinyTransformer(nn.Module):
    """Encoder-only: the input and the answer slots form one sequence through ``layers``
    encoder blocks (causal if asked). Encoder–decoder: the input goes through the encoder,
    the slots through decoder blocks that cross-attend to it (the mask applies to the
    decoder's self-attention; the encoder always sees the whole input). Both stacks add the
    same positional table, the slots counting their positions from 0 again.

    :meth:`forward` returns the logits at the slots and the attention matrices by kind:
    ``"self"`` (encoder, or the single stack), and for encoder–decoder ``"decoder"`` and
    ``"cross"``, each a list over layers of (B, h, S, T).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.tokens, c.n)
        if c.positional == "learned":
            self.position = nn.Parameter(torch.zeros(c.max_len, c.n))
        else:
            self.register_buffer("position", sinusoidal_encoding(c.max_len, c.n),
                                 persistent=False)
        self.encoder = nn.ModuleList(EncoderBlock(c.n, c.heads, c.q) for _ in range(c.layers))
        if c.architecture == "encoder-decoder":
            self.decoder = nn.ModuleList(DecoderBlock(c.n, c.heads, c.q)
                                         for _ in range(c.layers))
        self.ln_out = nn.LayerNorm(c.n)
        self.head = nn.Linear(c.n, c.classes)

    def embed_tokens(self, tokens: Tensor, positional: bool = True) -> Tensor:
        """Token embedding plus :math:`p_t` (B, T) → (B, T, n); no p_t for 'none'."""
        x = self.embed(tokens)
        if positional and self.config.positional != "none":
            x = x + self.position[: tokens.shape[1]]
        return x

    def encode(self, x: Tensor, causal: bool) -> tuple[Tensor, list[Tensor]]:
        """The encoder stack on embedded tokens (B, T, n): hidden states and A per layer."""
        maps = []
        for block in self.encoder:
            x, A = block(x, self.config.beta, causal)
            maps.append(A)
        return x, maps

    def forward(self, src: Tensor, slots: Tensor) -> tuple[Tensor, dict[str, list[Tensor]]]:
        """src (B, T_in) and slots (B, T_out) of token ids → logits (B, T_out, classes)."""
        c = self.config
        if c.architecture == "encoder":
            x, maps = self.encode(self.embed_tokens(torch.cat([src, slots], 1)), c.causal)
            out = x[:, src.shape[1]:]
            return self.head(self.ln_out(out)), {"self": maps}
        memory, maps = self.encode(self.embed_tokens(src), causal=False)
        y = self.embed_tokens(slots)
        decoder, cross = [], []
        for block in self.decoder:
            y, A_self, A_cross = block(y, memory, c.beta, c.causal)
            decoder.append(A_self)
            cross.append(A_cross)
        return self.head(self.ln_out(y)), {"self": maps, "decoder": decoder, "cross": cross}


def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    r"""Explicit, seeded initialisation (CPU generator, so a seed gives one model anywhere):
    linear weights :math:`\mathcal N(0, 1/n_{in})` (LeCun), embeddings and learned positions
    :math:`\mathcal N(0, 1)`, biases 0, LayerNorm :math:`\gamma = 1, \beta = 0`."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if isinstance(_owner(model, name), nn.LayerNorm):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                p.zero_()
            elif p.dim() == 2 and not isinstance(_owner(model, name), nn.Embedding) \
                    and name != "position":
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[1]))
            else:
                p.copy_(torch.randn(p.shape, generator=generator))


def _owner(model: nn.Module, name: str) -> nn.Module:
    path = name.rsplit(".", 1)[0] if "." in name else ""
    return model.get_submodule(path)
