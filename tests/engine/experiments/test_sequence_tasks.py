"""The toy tasks against plain-Python references."""

from __future__ import annotations

import pytest
import torch

from engine.experiments import sequence_tasks as tasks


@pytest.mark.parametrize("task, reference", [
    ("copy", lambda x: list(x)),
    ("reverse", lambda x: list(reversed(x))),
    ("sort", sorted),
])
def test_copy_reverse_sort(task, reference):
    batch = tasks.sample(task, 50, 7, 5, torch.Generator().manual_seed(0))
    assert batch.src.shape == batch.slots.shape == batch.target.shape == (50, 7)
    assert (batch.slots == tasks.blank(5)).all()
    assert batch.src.min() >= 0 and batch.src.max() < 5
    for x, y in zip(batch.src.tolist(), batch.target.tolist(), strict=True):
        assert y == reference(x)


def test_recall_answers_each_query_with_its_value():
    batch = tasks.sample("recall", 50, 6, 8, torch.Generator().manual_seed(1))
    assert batch.src.shape == (50, 12) and batch.slots.shape == batch.target.shape == (50, 6)
    for src, asked, answers in zip(batch.src.tolist(), batch.slots.tolist(),
                                   batch.target.tolist(), strict=True):
        keys, values = src[0::2], src[1::2]
        assert len(set(keys)) == len(keys)
        table = dict(zip(keys, values, strict=True))
        assert answers == [table[k] for k in asked]


def test_recall_needs_distinct_keys():
    with pytest.raises(ValueError, match="distinct keys"):
        tasks.sample("recall", 2, 9, 8, torch.Generator())
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.sample("shuffle", 2, 4, 8, torch.Generator())


def test_sampling_is_fixed_by_the_generator():
    a = tasks.sample("recall", 4, 5, 9, torch.Generator().manual_seed(3))
    b = tasks.sample("recall", 4, 5, 9, torch.Generator().manual_seed(3))
    c = tasks.sample("recall", 4, 5, 9, torch.Generator().manual_seed(4))
    assert torch.equal(a.src, b.src) and torch.equal(a.target, b.target)
    assert not torch.equal(a.src, c.src)


def test_example_lengths_and_labels():
    one = tasks.example("reverse", [3, 1, 4], 10)
    assert one.target.tolist() == [[4, 1, 3]] and one.slots.tolist() == [[10, 10, 10]]
    recall = tasks.example("recall", [3, 7, 5, 2], 10, queries=[5, 3])
    assert recall.slots.tolist() == [[5, 3]] and recall.target.tolist() == [[2, 7]]
    assert tasks.labels("recall", [3, 7, 5, 2], [5, 3], 10) == ["3", "7", "5", "2", "?5", "?3"]
    assert tasks.labels("copy", [1, 2], [10, 10], 10) == ["1", "2", "_", "_"]
    assert tasks.sequence_length("recall", 4) == 12 and tasks.sequence_length("sort", 4) == 8
