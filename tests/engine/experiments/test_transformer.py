"""The transformer's attention against independent references (CHECKS.md 1.6-a to 1.6-d, 1.6-f):
explicit sums, torch's fused ``scaled_dot_product_attention`` and ``nn.MultiheadAttention``,
and autograd Jacobians. Everything in float64 with the tolerances of CHECKS.md."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.experiments.transformer import (
    EncoderBlock,
    FeedForward,
    ModelConfig,
    MultiHeadAttention,
    TinyTransformer,
    attend,
    init_parameters,
)

D = torch.float64


def test_attention_mixing_is_a_convex_combination_of_transformed_tokens():
    # 1.6-a, seed 0: Ξ = A (X Wᵀ) is ξ_s = Σ_t a_st W x_t, and A is row-stochastic.
    g = torch.Generator().manual_seed(0)
    T, n, q = 7, 5, 3
    X = torch.randn(T, n, generator=g, dtype=D)
    W = torch.randn(n, n, generator=g, dtype=D)
    U_Q, U_K = (torch.randn(q, n, generator=g, dtype=D) for _ in range(2))
    Xi, A, _ = attend(X @ U_Q.T, X @ U_K.T, X @ W.T, beta=1 / math.sqrt(q))
    for s in range(T):
        xi_s = sum(A[s, t] * (W @ X[t]) for t in range(T))
        torch.testing.assert_close(Xi[s], xi_s, rtol=0, atol=1e-12)
    assert (A >= 0).all()
    torch.testing.assert_close(A.sum(-1), torch.ones(T, dtype=D), rtol=0, atol=1e-12)


def test_scores_have_rank_q():
    # 1.6-b, seed 1: rank(Xᵀ U_Qᵀ U_K X) = q = 3 for T = 20, n = 16, whatever the tokens.
    g = torch.Generator().manual_seed(1)
    mha = MultiHeadAttention(n=16, heads=1, q=3).double()
    init_parameters(mha, g)
    X = torch.randn(1, 20, 16, generator=g, dtype=D)
    Q, K, V = mha.project(X, X)
    _, _, scores = attend(Q, K, V, beta=1.0)
    assert scores.shape == (1, 1, 20, 20)
    assert int(torch.linalg.matrix_rank(scores[0, 0])) == 3
    # The same product written as the sheet does: Xᵀ U_Qᵀ U_K X with tokens as columns.
    U_Q, U_K = mha.U_Q.weight, mha.U_K.weight  # (q, n)
    Xc = X[0].T  # (n, T)
    torch.testing.assert_close(scores[0, 0], Xc.T @ U_Q.T @ U_K @ Xc, rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("beta", [None, 0.1, 3.0])
def test_softmax_attention_equals_scaled_dot_product_attention(causal, beta):
    # 1.6-c, seed 2: V softmax(QᵀK/√q)ᵀ equals F.scaled_dot_product_attention (scale 1/√q by
    # default); also for another β, and with the causal mask.
    g = torch.Generator().manual_seed(2)
    Q = torch.randn(3, 2, 9, 4, generator=g, dtype=D)
    K = torch.randn(3, 2, 9, 4, generator=g, dtype=D)
    V = torch.randn(3, 2, 9, 6, generator=g, dtype=D)
    out, A, _ = attend(Q, K, V, beta=beta if beta is not None else 1 / math.sqrt(4),
                       causal=causal)
    reference = F.scaled_dot_product_attention(Q, K, V, is_causal=causal, scale=beta)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    if causal:
        assert (A.triu(1) == 0).all()


def test_position_wise_mlp_commutes_with_permutations():
    # 1.6-d, seed 3: F(Ξ) = (F(ξ_1), …, F(ξ_T)) acts on each token alone.
    g = torch.Generator().manual_seed(3)
    ffn = FeedForward(8).double()
    init_parameters(ffn, g)
    Xi = torch.randn(2, 10, 8, generator=g, dtype=D)
    perm = torch.randperm(10, generator=g)
    torch.testing.assert_close(ffn(Xi[:, perm]), ffn(Xi)[:, perm], rtol=0, atol=1e-12)


def test_causal_self_attention_ignores_the_future_exactly():
    # 1.6-d, seed 3 (A-1.6-2): with the mask, ∂ξ_s/∂x_t = 0 exactly for t > s; without it,
    # the future matters.
    g = torch.Generator().manual_seed(3)
    block = EncoderBlock(n=8, heads=2, q=4).double()
    init_parameters(block, g)
    x = torch.randn(1, 6, 8, generator=g, dtype=D)

    def jacobian(causal):
        J = torch.autograd.functional.jacobian(lambda x: block(x, 0.5, causal)[0], x)
        return J[0, :, :, 0].abs().sum(dim=(1, 3))  # (s, t): Σ |∂ξ_s / ∂x_t|

    J = jacobian(True)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert (J[future] == 0).all()
    assert (J[~future] > 0).all()
    assert (jacobian(False)[future] > 1e-3).all()


@pytest.mark.parametrize("heads", [1, 2])
def test_cross_attention_equals_nn_multihead_attention(heads):
    # 1.6-f, seed 4: softmax(Q_dec K_encᵀ/√(E/h)) V_enc W_O equals nn.MultiheadAttention(dec,
    # enc, enc) without biases, for one head (CHECKS.md) and for two.
    g = torch.Generator().manual_seed(4)
    E = 8
    ours = MultiHeadAttention(n=E, heads=heads, q=E // heads).double()
    init_parameters(ours, g)
    theirs = nn.MultiheadAttention(E, heads, bias=False, batch_first=True).double()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.U_Q.weight, ours.U_K.weight,
                                               ours.U_V.weight]))
        theirs.out_proj.weight.copy_(ours.W_O.weight)
    dec = torch.randn(2, 5, E, generator=g, dtype=D)
    enc = torch.randn(2, 7, E, generator=g, dtype=D)
    out, A = ours(dec, enc, beta=1 / math.sqrt(E // heads))
    ref, ref_A = theirs(dec, enc, enc, average_attn_weights=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(A, ref_A, rtol=0, atol=1e-12)
    assert A.shape == (2, heads, 5, 7)


def config(**overrides) -> ModelConfig:
    base = dict(tokens=11, classes=10, n=16, heads=2, q=4, layers=2, max_len=24, beta=0.5)
    return ModelConfig(**{**base, **overrides})


def test_encoder_without_positions_is_permutation_equivariant():
    g = torch.Generator().manual_seed(6)
    model = TinyTransformer(config(positional="none")).double()
    init_parameters(model, g)
    tokens = torch.randint(0, 11, (3, 12), generator=g)
    perm = torch.randperm(12, generator=g)
    f = lambda t, causal=False: model.encode(model.embed_tokens(t), causal)[0]  # noqa: E731
    torch.testing.assert_close(f(tokens[:, perm]), f(tokens)[:, perm], rtol=0, atol=1e-12)
    assert (f(tokens[:, perm], True) - f(tokens, True)[:, perm]).abs().max() > 1e-3
    with_positions = TinyTransformer(config()).double()
    init_parameters(with_positions, torch.Generator().manual_seed(6))
    h = lambda t: with_positions.encode(with_positions.embed_tokens(t), False)[0]  # noqa: E731
    assert (h(tokens[:, perm]) - h(tokens)[:, perm]).abs().max() > 1e-3


def test_encoder_decoder_maps_and_shapes():
    g = torch.Generator().manual_seed(7)
    model = TinyTransformer(config(architecture="encoder-decoder", causal=True,
                                   positional="learned"))
    init_parameters(model, g)
    src = torch.randint(0, 10, (4, 8), generator=g)
    slots = torch.full((4, 5), 10)
    logits, maps = model(src, slots)
    assert logits.shape == (4, 5, 10)
    assert set(maps) == {"self", "decoder", "cross"}
    assert all(A.shape == (4, 2, 8, 8) for A in maps["self"])
    assert all(A.shape == (4, 2, 5, 5) and (A.triu(1) == 0).all() for A in maps["decoder"])
    assert all(A.shape == (4, 2, 5, 8) for A in maps["cross"])
    assert all((A.triu(1) > 0).any() for A in maps["self"])  # the encoder is never masked


def test_init_is_fixed_by_the_generator_and_lecun_scaled():
    a, b, c = (TinyTransformer(config(positional="learned")) for _ in range(3))
    init_parameters(a, torch.Generator().manual_seed(0))
    init_parameters(b, torch.Generator().manual_seed(0))
    init_parameters(c, torch.Generator().manual_seed(1))
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(),
                                  c.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
        if pa.dim() == 2:
            assert not torch.equal(pa, pc), name
    w = a.encoder[0].ffn[2].weight.detach()  # (16, 64): N(0, 1/64)
    assert abs(float(w.std()) - 1 / 8) < 0.02
    assert torch.equal(a.encoder[0].ln1.weight, torch.ones(16))
    assert not a.encoder[0].ffn[0].bias.detach().any()


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="heads must divide the width"):
        MultiHeadAttention(n=10, heads=3, q=4)
