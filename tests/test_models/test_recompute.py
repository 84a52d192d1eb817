# Copyright (c) ffl_mm contributors.
"""Recomputing the MFEF chain in backward (activation checkpointing)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.optim import OptimWrapper
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from ffl_mm_analysis.benchmark import SavedTensorMeter
from ffl_mm.models.kernels import recompute_in_backward
from conftest import ffl_cfg


def _block():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
        nn.ReLU(), nn.Conv2d(8, 8, 1))


def _saved_bytes(fn, x):
    meter = SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        out = fn(x)
    return out, meter.nbytes


def test_recompute_gives_the_plain_values_gradients_and_statistics():
    plain, recomputed = _block(), _block()
    x = torch.randn(4, 8, 6, 6)
    grad = torch.randn(4, 8, 6, 6)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    out_a, bytes_a = _saved_bytes(plain, xa)
    out_b, bytes_b = _saved_bytes(
        lambda t: recompute_in_backward(recomputed, t), xb)
    out_a.backward(grad)
    out_b.backward(grad)
    torch.testing.assert_close(out_b, out_a)
    torch.testing.assert_close(xb.grad, xa.grad)
    for pa, pb in zip(plain.parameters(), recomputed.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad)
    bn_a, bn_b = plain[1], recomputed[1]
    # one update of the running statistics, as without recomputation
    assert int(bn_b.num_batches_tracked) == int(bn_a.num_batches_tracked) == 1
    torch.testing.assert_close(bn_b.running_mean, bn_a.running_mean)
    torch.testing.assert_close(bn_b.running_var, bn_a.running_var)
    # only the input is kept: 4 * 8 * 6 * 6 floats
    assert bytes_b == 4 * 8 * 6 * 6 * 4 < bytes_a


def test_plain_checkpoint_would_move_batchnorm_twice():
    """The reason for ``buffers_kept``: PyTorch's own checkpoint reruns
    BatchNorm in training mode during backward."""
    block = _block()
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    cp.checkpoint(block, x, use_reentrant=False).sum().backward()
    assert int(block[1].num_batches_tracked) == 2


def test_recompute_without_gradients_is_the_plain_call():
    block = _block()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        out = recompute_in_backward(block, x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, block(x))


def _mfef(with_cp, hierarchical=False):
    torch.manual_seed(0)
    model = MODELS.build(
        ffl_cfg(
            fusion_pre_neck=[
                dict(type='MultiScaleNeck', hierarchical=hierarchical),
                dict(type='DualAttentionNeck')
            ],
            fusion_pre_neck_with_cp=with_cp))
    model.init_weights()
    return model


@pytest.mark.parametrize('hierarchical', [True, False])
def test_mfef_training_is_the_same_with_recomputation(hierarchical):
    """Through the modules (the Res2Net-style chain) and through MFEF's
    fused function (the default chain, which keeps as little as
    recomputation does)."""
    plain = _mfef(False, hierarchical)
    recomputed = _mfef(True, hierarchical)
    recomputed.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    batches = [
        dict(
            inputs=list(torch.randint(0, 256, (4, 3, 32, 32),
                                      dtype=torch.uint8)),
            data_samples=[DataSample().set_gt_label(i) for i in range(4)])
        for _ in range(3)
    ]
    for model in (plain, recomputed):
        wrapper = OptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        model.train()
        for batch in batches:
            model.train_step(copy.deepcopy(batch), wrapper)
    state_a, state_b = plain.state_dict(), recomputed.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(
            state_b[key], state_a[key], rtol=1e-4, atol=1e-5, msg=key)
    # the chain's activations are not kept: the loss graph is smaller
    x = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    _, bytes_plain = _saved_bytes(
        lambda t: plain(t, samples, mode='loss'), x)
    _, bytes_cp = _saved_bytes(
        lambda t: recomputed(t, samples, mode='loss'), x)
    if hierarchical:
        assert bytes_cp < bytes_plain
    else:
        assert bytes_cp == bytes_plain


def test_with_cp_needs_a_pre_neck():
    with pytest.raises(ValueError, match='fusion_pre_neck_with_cp=True needs'):
        MODELS.build(ffl_cfg(fusion_pre_neck_with_cp=True))
