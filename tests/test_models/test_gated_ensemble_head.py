# Copyright (c) ffl_mm contributors.
"""ONE's gate: weights that sum to 1, the weighted sum of the logits, and
the gradient it gets through the ensemble's cross-entropy."""
import pytest
import torch
import torch.nn.functional as F

from ffl_mm.registry import MODELS


def _head(n, **kwargs):
    return MODELS.build(dict(type='GatedEnsembleHead', num_branches=n,
                             in_channels=4, **kwargs))


@pytest.mark.parametrize('n', [2, 3, 4])
def test_gate_weights_sum_to_one_and_weigh_the_logits(n):
    torch.manual_seed(0)
    head = _head(n).train()
    feats = torch.randn(6, 4, 5, 5)
    logits = [torch.randn(6, 7) for _ in range(n)]
    weights = head.gate(feats)
    assert weights.shape == (6, n)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(6))
    # by hand: pool, Linear, BN (batch statistics), ReLU, softmax
    pooled = feats.mean(dim=(2, 3))
    scores = pooled @ head.fc.weight.T + head.fc.bias
    scores = (scores - scores.mean(0)) / torch.sqrt(
        scores.var(0, unbiased=False) + head.bn.eps)
    torch.testing.assert_close(weights, F.softmax(F.relu(scores), dim=1))
    ensemble = head(feats, logits)
    want = sum(weights[:, i:i + 1] * logits[i] for i in range(n))
    torch.testing.assert_close(ensemble, want)


def test_a_sample_with_no_positive_score_gets_uniform_weights():
    head = _head(3, with_bn=False)
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.copy_(torch.tensor([-1.0, -2.0, -0.5]))
    weights = head.gate(torch.randn(2, 4, 3, 3))
    torch.testing.assert_close(weights, torch.full((2, 3), 1 / 3))


def test_the_gate_learns_through_the_ensembles_cross_entropy():
    torch.manual_seed(0)
    head = _head(2).train()
    feats = torch.randn(8, 4, 3, 3)
    logits = [torch.randn(8, 5, requires_grad=True) for _ in range(2)]
    ensemble = head(feats, logits)
    F.cross_entropy(ensemble, torch.arange(8) % 5).backward()
    assert head.fc.weight.grad.abs().sum() > 0
    assert head.bn.weight.grad.abs().sum() > 0
    # BN follows the Linear layer: its bias has no effect, zero gradient
    assert head.fc.bias.grad.abs().max() < 1e-6
    assert all(z.grad.abs().sum() > 0 for z in logits)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='num_branches=1; it weighs at '
                       'least 2'):
        _head(1)
    with pytest.raises(ValueError, match="gate_input='image'"):
        _head(2, gate_input='image')
    with pytest.raises(ValueError, match='in_channels is unknown'):
        MODELS.build(dict(type='GatedEnsembleHead', num_branches=2))
    with pytest.raises(ValueError, match='built for 2 branches, got 3'):
        _head(2)(torch.randn(2, 4, 1, 1), [torch.randn(2, 3)] * 3)
