# Copyright (c) ffl_mm contributors.
"""The memory switch (``with_cp``): PyTorch's activation checkpointing,
whole or selective, with BatchNorm statistics moved once a step."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from conftest import ffl_cfg
from ffl_mm.models.necks import FFLFusionNeck
from ffl_mm.models.necks.fusion_pre_necks import FusionPreNecks
from ffl_mm.models.utils.recompute import (check_with_cp,
                                           out_of_place_activations,
                                           recompute_in_backward)
from ffl_mm.registry import MODELS
from helpers.lab import lab

allocated_bytes = lab('benchmark').allocated_bytes

MFEF = [dict(type='MultiScaleNeck'), dict(type='DualAttentionNeck')]


def _block():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
        nn.ReLU(), nn.Conv2d(8, 8, 1))


def _kept_bytes(fn):
    """Bytes allocated by ``fn`` and alive when it returns, beyond its
    result: what the forward pass keeps for backward."""
    out = []
    _, alive = allocated_bytes(lambda: out.append(fn()))
    return alive - out[0].numel() * out[0].element_size()


@pytest.mark.parametrize('selective', [False, True])
def test_recompute_gives_the_plain_values_gradients_and_statistics(
        selective):
    plain, recomputed = _block(), _block()
    if selective:
        out_of_place_activations(recomputed)
    x = torch.randn(4, 8, 6, 6)
    grad = torch.randn(4, 8, 6, 6)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    bytes_a = _kept_bytes(lambda: plain(xa))
    bytes_b = _kept_bytes(
        lambda: recompute_in_backward(recomputed, xb, selective=selective))
    out_a, out_b = plain(xa), recompute_in_backward(
        recomputed, xb, selective=selective)
    out_a.backward(grad)
    out_b.backward(grad)
    torch.testing.assert_close(out_b, out_a)
    torch.testing.assert_close(xb.grad, xa.grad)
    for pa, pb in zip(plain.parameters(), recomputed.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad)
    bn_a, bn_b = plain[1], recomputed[1]
    # one update of the running statistics per forward (2 forwards: one
    # measured, one here), as without recomputation
    assert int(bn_b.num_batches_tracked) == int(bn_a.num_batches_tracked) \
        == 2
    torch.testing.assert_close(bn_b.running_mean, bn_a.running_mean)
    torch.testing.assert_close(bn_b.running_var, bn_a.running_var)
    # maps of 4 x 8 x 6 x 6 floats: plain keeps the conv's map (BN's
    # input), BN's batch mean and inverse std (8 floats each) and the
    # ReLU's map (also the 1x1 conv's input); selective keeps the two
    # conv results (the last being the output, not counted), whole keeps
    # none; checkpointing keeps the CPU generator's state to replay
    size = 4 * 8 * 6 * 6 * 4
    rng = torch.get_rng_state().numel()
    assert bytes_a == 2 * size + 2 * 8 * 4
    assert bytes_b == (size if selective else 0) + rng


def test_plain_checkpoint_would_move_batchnorm_twice():
    """The reason for ``buffers_kept``: PyTorch's own checkpoint reruns
    BatchNorm in training mode during backward."""
    block = _block()
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    cp.checkpoint(block, x, use_reentrant=False).sum().backward()
    assert int(block[1].num_batches_tracked) == 2


def test_recompute_twice_with_a_kept_graph():
    """A graph kept for a second backward recomputes again, statistics
    still untouched."""
    block = _block()
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    out = recompute_in_backward(block, x)
    out.sum().backward(retain_graph=True)
    first = x.grad.clone()
    out.sum().backward()
    torch.testing.assert_close(x.grad, 2 * first)
    assert int(block[1].num_batches_tracked) == 1


def test_recompute_without_gradients_is_the_plain_call():
    block = _block()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        out = recompute_in_backward(block, x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, block(x))


def test_selective_switch_turns_in_place_activations_out_of_place():
    """A kept convolution result must not be overwritten: the switch
    makes the region's activations out of place (same values)."""
    neck = FFLFusionNeck(16, num_branches=2, with_cp='selective')
    assert neck.depthwise.activate.inplace is False
    chains = FusionPreNecks(MFEF, 16, 2, with_cp='selective')
    assert all(not m.inplace for m in chains.modules()
               if isinstance(m, nn.ReLU))
    plain = FusionPreNecks(MFEF, 16, 2)
    assert any(m.inplace for m in plain.modules() if isinstance(m, nn.ReLU))


@pytest.mark.parametrize('value', ['full', 1, None, 'yes'])
def test_with_cp_values_are_checked(value):
    with pytest.raises(ValueError, match=f"with_cp={value!r}: use False"):
        check_with_cp(value, 'FFLFusionNeck: with_cp')
    with pytest.raises(ValueError, match='FusionPreNecks: with_cp='):
        FusionPreNecks(MFEF, 16, 2, with_cp=value)


def _mfef(with_cp, hierarchical=False, **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(
        ffl_cfg(
            fusion_pre_neck=[
                dict(type='MultiScaleNeck', hierarchical=hierarchical),
                dict(type='DualAttentionNeck')
            ],
            fusion_pre_neck_with_cp=with_cp, **kwargs))
    model.init_weights()
    return model


def _batches(n=3):
    torch.manual_seed(1)
    return [
        dict(
            inputs=list(torch.randint(0, 256, (4, 3, 32, 32),
                                      dtype=torch.uint8)),
            data_samples=[DataSample().set_gt_label(i) for i in range(4)])
        for _ in range(n)
    ]


@pytest.mark.parametrize('with_cp,hierarchical', [(True, True),
                                                  ('selective', False),
                                                  (True, False)])
def test_mfef_training_is_the_same_with_recomputation(with_cp, hierarchical):
    """Three SGD steps: weights and BN statistics as without the switch;
    the chains' activations are not kept."""
    plain = _mfef(False, hierarchical)
    recomputed = _mfef(with_cp, hierarchical)
    recomputed.load_state_dict(plain.state_dict())
    for model in (plain, recomputed):
        wrapper = OptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        model.train()
        for batch in _batches():
            model.train_step(copy.deepcopy(batch), wrapper)
    state_a, state_b = plain.state_dict(), recomputed.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(
            state_b[key], state_a[key], rtol=1e-4, atol=1e-5, msg=key)
    x = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    kept_plain = _kept_bytes(
        lambda: sum(plain(x, samples, mode='loss').values()))
    kept_cp = _kept_bytes(
        lambda: sum(recomputed(x, samples, mode='loss').values()))
    assert kept_cp < kept_plain


def test_memory_switch_under_bfloat16_autocast():
    """CPU autocast (bfloat16): with the switch, the same gradients as
    without it, and less kept for backward."""
    plain = _mfef(False)
    recomputed = _mfef(True)
    recomputed.load_state_dict(plain.state_dict())
    batch = _batches(1)[0]
    grads, kept = [], []
    for model in (plain, recomputed):
        model.train()
        data = model.data_preprocessor(copy.deepcopy(batch), True)

        def loss():
            with torch.autocast('cpu', dtype=torch.bfloat16):
                losses = model(data['inputs'], data['data_samples'],
                               mode='loss')
            return sum(v for k, v in losses.items() if 'loss' in k)

        kept.append(_kept_bytes(loss))
        model.zero_grad()
        loss().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert kept[1] < kept[0]
    for name, grad in grads[0].items():
        # bfloat16 rounding of the same sums (8 bits of mantissa)
        torch.testing.assert_close(grads[1][name], grad, rtol=2e-2,
                                   atol=2e-2, msg=name)
    assert any(g.abs().sum() > 0 for n, g in grads[1].items()
               if n.startswith('fusion_pre_necks'))


def test_default_switch_and_its_errors():
    # MFEF recomputes its chains unless told otherwise; FFL has none
    assert _mfef(None).fusion_pre_necks.with_cp is True
    assert _mfef(False).fusion_pre_necks.with_cp is False
    MODELS.build(ffl_cfg(fusion_pre_neck_with_cp=False))
    for value in (True, 'selective'):
        with pytest.raises(ValueError,
                           match=f'fusion_pre_neck_with_cp={value!r} needs'):
            MODELS.build(ffl_cfg(fusion_pre_neck_with_cp=value))
