"""Toy sequence tasks for the attention experiment: copy, reverse, sort, associative recall.

Every example is an input ``src`` of symbols 0..V−1, a row of answer slots ``slots`` and the
``target`` symbol for each slot. The model reads src and slots in one pass and answers at the
slots, so the same format serves a bidirectional encoder, a causal one (the slots come after
the whole input, so they may look back at all of it) and an encoder–decoder (src to the
encoder, slots to the decoder).

* copy, reverse, sort: src = x (T symbols); T slots, each the blank token ``BLANK = V``;
  target = x, x reversed, x sorted. Only its position tells a slot which symbol to give, so
  without a positional encoding the slots are indistinguishable (the lesson of "none").
* recall (multi-query associative recall, the task behind induction heads): src = k₁ v₁ k₂
  v₂ … k_T v_T with T distinct keys and random values; the T slots are keys drawn again (with
  replacement), each to be answered with its value. Finding the value means matching the key
  and then taking the token after it: two steps, so two layers (Olsson et al. 2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Task = Literal["copy", "reverse", "sort", "recall"]
TASKS: tuple[str, ...] = ("copy", "reverse", "sort", "recall")


@dataclass(frozen=True)
class Batch:
    src: Tensor  # (B, T_in) symbols
    slots: Tensor  # (B, T_out) the blank token, or recall's query keys
    target: Tensor  # (B, T_out) the answer at each slot


def blank(vocab: int) -> int:
    """The answer-slot token id, just past the symbols."""
    return vocab


def token_count(vocab: int) -> int:
    """Embedding rows: the V symbols and the blank."""
    return vocab + 1


def src_length(task: str, length: int) -> int:
    """Input tokens: T, or 2T key–value tokens for recall."""
    return 2 * length if task == "recall" else length


def sequence_length(task: str, length: int) -> int:
    """Input plus answer slots: the length of the one sequence an encoder-only model reads."""
    return src_length(task, length) + length


def answer(task: str, x: Tensor) -> Tensor:
    """The target of copy, reverse or sort for inputs x (..., T)."""
    if task == "copy":
        return x.clone()
    if task == "reverse":
        return x.flip(-1)
    if task == "sort":
        return x.sort(dim=-1).values
    raise ValueError(f"answer() is for copy, reverse and sort; recall needs keys, got {task!r}")


def sample(task: str, batch: int, length: int, vocab: int, generator: torch.Generator,
           device: torch.device | str = "cpu") -> Batch:
    """A batch of random examples, drawn with ``generator`` (on ``device``)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task != "recall":
        x = torch.randint(0, vocab, (batch, length), generator=generator, device=device)
        slots = torch.full_like(x, blank(vocab))
        return Batch(x, slots, answer(task, x))
    if length > vocab:
        raise ValueError(f"recall needs distinct keys: length {length} > vocab {vocab}")
    scores = torch.rand(batch, vocab, generator=generator, device=device)
    keys = scores.argsort(dim=1)[:, :length]  # (B, T) distinct
    values = torch.randint(0, vocab, (batch, length), generator=generator, device=device)
    asked = torch.randint(0, length, (batch, length), generator=generator, device=device)
    src = torch.stack([keys, values], dim=2).reshape(batch, 2 * length)  # k1 v1 k2 v2 …
    return Batch(src, keys.gather(1, asked), values.gather(1, asked))


def example(task: str, x: list[int], vocab: int, queries: list[int] | None = None) -> Batch:
    """One example from given symbols (batch of 1): x for copy/reverse/sort, the key–value
    tokens k₁ v₁ … for recall with ``queries`` the keys to look up."""
    src = torch.tensor([x])
    if task != "recall":
        return Batch(src, torch.full_like(src, blank(vocab)), answer(task, src))
    table = dict(zip(x[0::2], x[1::2], strict=True))
    asked = list(queries or [])
    return Batch(src, torch.tensor([asked]), torch.tensor([[table[k] for k in asked]]))


def labels(task: str, src: list[int], slots: list[int], vocab: int) -> list[str]:
    """Axis labels for the tokens of one example: symbols as digits, '_' for a blank slot,
    '?k' for recall's query of key k."""
    shown = [str(s) for s in src]
    for s in slots:
        shown.append("_" if s == blank(vocab) else f"?{s}")
    return shown
