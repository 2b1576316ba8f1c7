"""ViT patch embedding (CHECKS.md 1.6-g) and the vit-patches run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from engine.core import RunContext, checks_of, run_to_end
from engine.experiments.vit_patches import (
    ACCURACY_TARGET,
    VitParams,
    conv_weight,
    experiment,
    patchify,
    unpatchify,
)


def test_patches_in_order_and_back():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((12, 9, 3))  # H × W × q
    p = 3
    tokens = patchify(torch.from_numpy(image), p).numpy()
    assert tokens.shape == (12, 27)  # (H/p · W/p) tokens of q p² numbers
    for t in range(12):
        r, c = divmod(t, 3)
        np.testing.assert_array_equal(tokens[t],
                                      image[r * p:(r + 1) * p, c * p:(c + 1) * p, :].ravel())
    back = unpatchify(torch.from_numpy(tokens), p, 12, 9, 3).numpy()
    np.testing.assert_array_equal(back, image)
    with pytest.raises(ValueError, match="must divide"):
        patchify(torch.zeros(10, 10, 1), 3)


def test_embedding_is_a_strided_convolution():
    # 1.6-g, seed 5: V vec(patch) with V ∈ R^{n×(qp²)} equals Conv2d(q, n, p, stride=p).
    g = torch.Generator().manual_seed(5)
    q, p, n = 3, 4, 7
    image = torch.randn(16, 12, q, generator=g, dtype=torch.float64)
    V = torch.randn(n, q * p * p, generator=g, dtype=torch.float64)
    tokens = patchify(image, p) @ V.T  # (T, n)
    conv = nn.Conv2d(q, n, p, stride=p, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(conv_weight(V, p, q))
        out = conv(image.permute(2, 0, 1)[None])  # (1, n, H/p, W/p)
    torch.testing.assert_close(out[0].flatten(1).T, tokens, rtol=0, atol=1e-12)


def test_default_run_passes_all_checks():
    torch.set_num_threads(1)
    params = VitParams()
    frames = run_to_end(experiment, params)
    checks = checks_of(frames)
    assert len(checks) == 4
    for check in checks.values():
        assert check.passed, (check.name, check.measured, check.detail)
    assert frames[-1].metrics["held_out_accuracy"] >= ACCURACY_TARGET
    assert len(frames) <= 300
    figs = experiment.figures(params)
    for frame in frames:
        if frame.op is not None:
            assert frame.figure in figs
            assert all(i < len(figs[frame.figure].data) for i in frame.indices)
    attention = [f.update["z"] for f in frames if f.figure == "attention"]
    assert all(z.shape == (17, 17) and z.dtype == np.float32 for zs in attention for z in zs)
    cls = [f.update["z"] for f in frames if f.figure == "cls_attention"][-1]
    assert all(z.shape == (4, 4) and abs(z.sum() - 1) < 0.5 for z in cls)
    V = [f.update["z"][0] for f in frames if f.figure == "embedding"][-1]
    assert V.shape == (params.width, 4)


def test_same_seed_same_accuracy_and_cancellation():
    params = VitParams(steps=20, patch=4)
    a, b = run_to_end(experiment, params), run_to_end(experiment, params)
    assert a[-1].metrics == b[-1].metrics
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    frames = list(experiment.run(params, RunContext(seed=0, should_stop=stop)))
    assert all(f.checks is None for f in frames) and len(frames) < len(a)


@pytest.mark.parametrize("values, field", [
    ({"width": 32, "heads": 3}, "heads"),
    ({"patch": 3}, "patch"),
    ({"digit": 297}, "digit"),
    ({"patch": 1, "width": 64, "layers": 2, "heads": 4, "steps": 1000}, "steps"),  # too much work
])
def test_params_validation(values, field):
    with pytest.raises(ValidationError) as error:
        VitParams(**values)
    assert error.value.errors()[0]["loc"] == (field,)
    assert VitParams(patch=1, steps=1000).steps == 1000
