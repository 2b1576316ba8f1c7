"""The attention experiment: its run, its checks, and queries on the model it trained.

References are independent of the run: the tasks' answers are recomputed in plain Python,
the trained weights are reloaded from the artifact and evaluated on fresh examples drawn here,
and the attention algebra is checked against torch in test_transformer.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from latex2mathml.converter import convert
from pydantic import ValidationError

from engine.core import Params, RunContext, checks_of, run_to_end, unpack_state
from engine.experiments import sequence_tasks as tasks
from engine.experiments.attention import (
    ACCURACY_TARGET,
    MAP_UPDATES,
    AttentionParams,
    AttentionQuery,
    build_model,
    experiment,
    model_config,
    probe_example,
)
from tests.engine.frames import same_frames

SMALL = dict(length=4, layers=1, width=16, heads=2, q=4, steps=30)  # ~0.2 s


@pytest.fixture(scope="module")
def default_run():
    torch.set_num_threads(1)  # as in the worker
    params = AttentionParams()
    return params, run_to_end(experiment, params)


def maps_of(frames, figure="attention"):
    return [f.update["z"] for f in frames if f.figure == figure]


def assert_frames_fit(params, frames, figs=None):
    figs = figs or experiment.figures(params)
    for frame in frames:
        if frame.op is None:
            continue
        assert frame.figure in figs, frame.figure
        assert all(0 <= i < len(figs[frame.figure].data) for i in frame.indices or [])


# ----------------------------------------------------------------------------------------------
# The default run.


def test_default_run_passes_all_checks(default_run):
    params, frames = default_run
    checks = checks_of(frames)
    assert len(checks) == 5
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    assert checks["rank(QKᵀ) ≤ q"].measured == params.q  # generic scores reach the bound
    assert checks["Engine attention = F.scaled_dot_product_attention"].measured <= 1e-12
    assert "Negative controls" in checks[
        "No positional encoding: self-attention is permutation-equivariant"].detail
    assert frames[-1].metrics["accuracy"] >= ACCURACY_TARGET
    assert frames[-1].artifact is not None


def test_default_run_is_bounded_and_streams_float32_maps(default_run):
    params, frames = default_run
    assert len(frames) <= 300
    maps = maps_of(frames)
    assert len(maps) == MAP_UPDATES + 1  # the untrained maps, then every 10 steps
    L = tasks.sequence_length(params.task, params.length)
    for zs in maps:
        assert len(zs) == params.layers * params.heads
        for z in zs:
            assert z.dtype == np.float32 and z.shape == (L, L)
            np.testing.assert_allclose(z.sum(axis=1), 1.0, atol=1e-5)
    progress = [f.progress for f in frames if f.progress is not None]
    assert progress[-1] == (params.steps, params.steps)
    assert all(0 < step <= total for step, total in progress)
    assert_frames_fit(params, frames)


def test_reverse_attention_forms_the_anti_diagonal(default_run):
    params, frames = default_run
    T = params.length
    anti = np.arange(T)[::-1]

    def best_head(zs):
        """How many answer slots put their largest weight on the mirrored input token."""
        return max(int((z[T:, :T].argmax(axis=1) == anti).sum()) for z in zs)

    maps = maps_of(frames)
    assert best_head(maps[-1]) == T
    assert best_head(maps[0]) < T // 2  # untrained: no such pattern
    trained = [z for z in maps[-1] if (z[T:, :T].argmax(axis=1) == anti).all()]
    assert min(float(z[T:, :T][np.arange(T), anti].mean()) for z in trained) > 0.5


def test_the_trained_weights_solve_fresh_examples(default_run):
    # Reload the artifact and score it on examples drawn here, against Python's reversal.
    params, frames = default_run
    model = build_model(params)
    model.load_state_dict(unpack_state(frames[-1].artifact))
    model.eval()
    x = torch.randint(0, params.vocab, (500, params.length),
                      generator=torch.Generator().manual_seed(123))
    slots = torch.full_like(x, tasks.blank(params.vocab))
    with torch.no_grad():
        predicted = model(x, slots)[0].argmax(-1)
    expected = torch.tensor([list(reversed(row)) for row in x.tolist()])
    assert float((predicted == expected).float().mean()) >= ACCURACY_TARGET


def test_another_seed_reaches_the_stated_accuracy_too():
    torch.set_num_threads(1)
    frames = run_to_end(experiment, AttentionParams(seed=1))
    assert all(c.passed for c in checks_of(frames).values())
    assert frames[-1].metrics["accuracy"] >= ACCURACY_TARGET


# ----------------------------------------------------------------------------------------------
# Other settings.


def test_without_positional_encoding_order_tasks_fail_and_the_check_says_why():
    params = AttentionParams(positional="none", steps=60)
    frames = run_to_end(experiment, params)
    checks = checks_of(frames)
    accuracy = checks[f"Accuracy ≥ {ACCURACY_TARGET:.0%} on reverse"]
    assert not accuracy.passed and accuracy.measured < 0.5
    assert "positional encoding" in accuracy.detail and "permutation-equivariant" in accuracy.detail
    name = "No positional encoding: self-attention is permutation-equivariant"
    assert checks[name].passed
    # Identical blank slots, no positions, no mask: every slot gives the same answer.
    q = AttentionQuery.model_validate({"tokens": "3 1 4 1 5 9 2 6"}, context={"params": params})
    out = list(experiment.query(params, q, frames[-1].artifact, RunContext(0, "cpu")))
    assert len(set(out[-1].metrics["output"].split())) == 1


def test_causal_mask_zeroes_the_future_in_every_streamed_map():
    params = AttentionParams(causal=True, **SMALL)
    frames = run_to_end(experiment, params)
    checks = checks_of(frames)
    assert checks["Rows of A sum to 1, a_st ≥ 0, 0 above the diagonal"].passed
    for zs in maps_of(frames):
        assert all((np.triu(z, 1) == 0).all() for z in zs)
        assert all((np.diag(z) > 0).all() for z in zs)


def test_encoder_decoder_streams_cross_attention():
    params = AttentionParams(task="recall", architecture="encoder-decoder", vocab=6, **SMALL)
    figs = experiment.figures(params)
    assert set(figs) == {"training", "probe", "attention", "decoder_attention",
                         "cross_attention"}
    frames = run_to_end(experiment, params)
    cross = maps_of(frames, "cross_attention")
    assert len(cross) == len(maps_of(frames, "attention")) > 1
    assert all(z.shape == (4, 8) for zs in cross for z in zs)  # T slots × 2T input tokens
    assert all(z.shape == (8, 8) for zs in maps_of(frames, "attention") for z in zs)
    assert_frames_fit(params, frames, figs)
    checks = checks_of(frames)
    for name in ("Rows of A sum to 1, a_st ≥ 0", "rank(QKᵀ) ≤ q",
                 "Engine attention = F.scaled_dot_product_attention",
                 "No positional encoding: self-attention is permutation-equivariant"):
        assert checks[name].passed, checks[name].detail


def test_beta_scales_one_over_root_q():
    params = AttentionParams(beta_scale=2.0, q=16)
    assert model_config(params).beta == pytest.approx(2 / math.sqrt(16))
    # A larger β sharpens the same untrained scores: lower entropy per row.
    probe = probe_example(params)

    def entropy(scale):
        model = build_model(AttentionParams(beta_scale=scale, q=16), seed=0)
        with torch.no_grad():
            A = model(probe.src, probe.slots)[1]["self"][0]
        return float(-(A * A.clamp_min(1e-30).log()).sum(-1).mean())

    assert entropy(0.25) > entropy(1.0) > entropy(4.0)



def test_same_seed_same_frames():
    params = AttentionParams(seed=5, **SMALL)
    first = run_to_end(experiment, params)
    second = run_to_end(experiment, params)
    assert same_frames(first, second)
    a, b = unpack_state(first[-1].artifact), unpack_state(second[-1].artifact)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not same_frames(first, run_to_end(experiment, AttentionParams(seed=6, **SMALL)))


def test_cancellation_stops_without_checks():
    calls = 0

    def stop_after_five() -> bool:
        nonlocal calls
        calls += 1
        return calls > 5

    params = AttentionParams(**SMALL)
    frames = list(experiment.run(params, RunContext(seed=0, should_stop=stop_after_five)))
    assert all(f.checks is None and f.artifact is None for f in frames)
    assert 0 < len(frames) < len(run_to_end(experiment, params))


# ----------------------------------------------------------------------------------------------
# Queries on a finished run.


def test_query_runs_the_trained_model_on_the_typed_sequence(default_run):
    params, frames = default_run
    q = AttentionQuery.model_validate({"tokens": "3, 1 4 1 5 9 2 6"}, context={"params": params})
    assert q.tokens == "3 1 4 1 5 9 2 6"
    figs = experiment.query_figures(params, q)
    assert set(figs) == {"output", "attention"}
    ticks = list(figs["attention"].layout.xaxis.ticktext)
    assert ticks == ["3", "1", "4", "1", "5", "9", "2", "6"] + ["_"] * 8
    out = list(experiment.query(params, q, frames[-1].artifact, RunContext(0, "cpu")))
    for frame in out:
        if frame.op is not None:
            assert frame.figure in figs
            assert all(0 <= i < len(figs[frame.figure].data) for i in frame.indices)
    final = out[-1]
    assert final.metrics["output"] == final.metrics["expected"] == "6 2 9 5 1 4 1 3"
    assert final.metrics["correct"] == 8
    assert final.checks and all(c.passed for c in final.checks)
    grid = next(f for f in out if f.figure == "output").update["z"][0]
    assert (grid[2] == 1).all()  # every answer marked right
    zs = next(f for f in out if f.figure == "attention").update["z"]
    assert len(zs) == 4 and all(z.shape == (16, 16) for z in zs)


@pytest.mark.parametrize("tokens, message", [
    ("3 1 4", "trained on 8 symbols, got 3"),
    ("3 1 4 1 5 9 2 12", "outside this run's vocabulary 0 … 9"),
    ("3 1 4 1 5 9 2 x", "whole numbers"),
    ("3 1 4 1 5 9 2 -6", "whole numbers"),
])
def test_query_validation_names_the_field(default_run, tokens, message):
    params, _ = default_run
    with pytest.raises(ValidationError) as error:
        AttentionQuery.model_validate({"tokens": tokens}, context={"params": params})
    assert error.value.errors()[0]["loc"] == ("tokens",)
    assert message in str(error.value)


def test_query_fields_for_the_wrong_task_or_unknown_names(default_run):
    params, _ = default_run
    with pytest.raises(ValidationError) as error:
        AttentionQuery.model_validate({"tokens": "1 2 3 4 5 6 7 8", "queries": "1"},
                                      context={"params": params})
    assert error.value.errors()[0]["loc"] == ("queries",)
    assert "recall" in str(error.value)
    with pytest.raises(ValidationError):
        AttentionQuery.model_validate({"tokens": "1", "input": "2"}, context={"params": params})
    with pytest.raises(ValidationError):
        AttentionQuery.model_validate({}, context={"params": params})


def test_recall_queries():
    params = AttentionParams(task="recall", causal=True, vocab=6, **SMALL)
    frames = run_to_end(experiment, params)
    context = {"params": params}
    with pytest.raises(ValidationError, match="must be distinct; repeated: \\[3\\]"):
        AttentionQuery.model_validate({"tokens": "3 1 3 2 4 0 5 5"}, context=context)
    with pytest.raises(ValidationError, match="4 key–value pairs \\(8 symbols\\), got 4"):
        AttentionQuery.model_validate({"tokens": "3 1 2 2"}, context=context)
    with pytest.raises(ValidationError) as error:
        AttentionQuery.model_validate({"tokens": "3 1 2 2 4 0 5 5", "queries": "3 2 1 4"},
                                      context=context)
    assert error.value.errors()[0]["loc"] == ("queries",)
    assert "[1] not among the keys [2, 3, 4, 5]" in str(error.value)
    with pytest.raises(ValidationError, match="4 queries per sequence, got 2"):
        AttentionQuery.model_validate({"tokens": "3 1 2 2 4 0 5 5", "queries": "3 2"},
                                      context=context)
    q = AttentionQuery.model_validate({"tokens": "3 1 2 2 4 0 5 5", "queries": "5 5 3 2"},
                                      context=context)
    figs = experiment.query_figures(params, q)
    assert list(figs["attention"].layout.xaxis.ticktext)[-4:] == ["?5", "?5", "?3", "?2"]
    out = list(experiment.query(params, q, frames[-1].artifact, RunContext(0, "cpu")))
    assert out[-1].metrics["expected"] == "5 5 1 2"
    default = AttentionQuery.model_validate({"tokens": "3 1 2 2 4 0 5 5"}, context=context)
    out = list(experiment.query(params, default, frames[-1].artifact, RunContext(0, "cpu")))
    assert out[-1].metrics["expected"] == "1 2 0 5"  # the keys in the order given


def test_query_revalidates_against_the_run(default_run):
    params, frames = default_run
    unchecked = AttentionQuery(tokens="1 2 3")  # no context: only the syntax is checked
    with pytest.raises(ValidationError, match="trained on 8 symbols"):
        list(experiment.query(params, unchecked, frames[-1].artifact, RunContext(0, "cpu")))


# ----------------------------------------------------------------------------------------------
# Params, figures, formulas.


@pytest.mark.parametrize("values, field", [
    ({"width": 32, "heads": 3}, "heads"),
    ({"width": 20, "heads": 3}, "heads"),
    ({"task": "recall", "vocab": 4, "length": 8}, "length"),
    ({"length": 17}, "length"),
    ({"width": 30}, "width"),
    ({"beta_scale": 0.0}, "beta_scale"),
    ({"task": "shuffle"}, "task"),
    ({"positional": "rotary"}, "positional"),
    ({"steps": 5000}, "steps"),
    ({"task": "recall", "vocab": 32, "length": 16, "layers": 4, "width": 64, "heads": 4,
      "architecture": "encoder-decoder", "steps": 600}, "steps"),  # too much work for one run
])
def test_params_validation_names_the_field(values, field):
    with pytest.raises(ValidationError) as error:
        AttentionParams(**values)
    assert error.value.errors()[0]["loc"] == (field,)


def test_params_schema():
    assert issubclass(AttentionParams, Params)
    assert AttentionParams(task="recall", vocab=8, length=8).length == 8
    assert AttentionParams(task="recall", causal=True, steps=1000).steps == 1000
    assert AttentionParams(steps=3000).steps == 3000  # the default model, at the step bound
    schema = AttentionParams.model_json_schema()["properties"]
    for name, prop in schema.items():
        assert "default" in prop and prop.get("description"), name
        if "enum" not in prop and prop.get("type") != "boolean":
            assert "minimum" in prop and "maximum" in prop, name


def test_figures_and_formulas():
    params = AttentionParams()
    figs = experiment.figures(params)
    assert set(figs) == {"training", "probe", "attention"}
    assert len(figs["attention"].data) == params.layers * params.heads
    assert all(len(t.z) == 0 for t in figs["attention"].data)
    assert len(figs["training"].data[0].x) == 0
    probe = probe_example(params)
    labels = [str(s) for s in probe.src[0].tolist()] + ["_"] * params.length
    assert list(figs["attention"].layout.xaxis.ticktext) == labels
    assert figs["probe"].data[0].z.shape == (3, params.length)
    for formula in experiment.formulas:
        assert convert(formula.latex).startswith("<math")
    assert {f.erratum for f in experiment.formulas} >= {"E-1.6-1", "A-1.6-2"}
