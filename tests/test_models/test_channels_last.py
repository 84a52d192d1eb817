# Copyright (c) ffl_mm contributors.
"""channels_last memory format (the GPU fast path) on the CPU: the FFL
and MFEF modules give the same losses and gradients in either layout."""
import json

import pytest
import torch
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from conftest import REPO, ffl_cfg, mixed_layout_ops, shipped_config
from helpers.lab import lab

bench = lab('benchmark')
MFEF = [dict(type='MultiScaleNeck'), dict(type='DualAttentionNeck')]


def test_mfef_model_in_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = MODELS.build(ffl_cfg(fusion_pre_neck=MFEF)).train()
    model.init_weights()
    # float64, so that only the layout differs (float32 sums in another
    # order differ by rounding)
    model.double()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model.zero_grad()
        model.to(memory_format=layout)
        losses = model.loss(x.contiguous(memory_format=layout), samples)
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append((losses, grads))
    conv = model.fusion_pre_necks[0][0].blocks[0].grouped.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    (loss_a, grad_a), (loss_b, grad_b) = results
    for key in loss_a:
        torch.testing.assert_close(loss_b[key], loss_a[key], msg=key)
    for name in grad_a:
        torch.testing.assert_close(grad_b[name], grad_a[name], msg=name)


def test_benchmark_channels_last_flag(tmp_path, run_in_process):
    """MFEF through the tool in channels-last; with fusion pre-necks the
    tool also times the model without them and splits a/b in two."""
    out = tmp_path / 'bench.json'
    run_in_process('analysis_tools/benchmark.py',
                   f'{REPO}/configs/mfef/mfef_resnet32x2_digits.py',
                   '--batch-size', '4', '--iters', '1', '--warmup', '1',
                   '--channels-last', '--no-memory', '--json', out)
    result = json.loads(out.read_text())
    variants = result['variants']
    assert set(variants) == {'model', 'ce_only', 'single',
                             'without_pre_neck'}
    assert variants['model']['time']['n'] == 1
    cfg = shipped_config('configs/mfef/mfef_resnet32x2_digits.py')
    chain = bench.build_variant(cfg, 'model').fusion_pre_necks
    assert variants['without_pre_neck']['params'] == \
        variants['model']['params'] - sum(p.numel()
                                          for p in chain.parameters())
    times = {name: v['time']['median_ms'] for name, v in variants.items()}
    assert result['ratio_time_pre_neck'] == pytest.approx(
        times['model'] / times['without_pre_neck'])
    assert result['ratio_time_without_pre_neck_vs_ce_only'] == \
        pytest.approx(times['without_pre_neck'] / times['ce_only'])


@pytest.mark.parametrize('pre_neck', [None, MFEF], ids=['ffl', 'mfef'])
def test_training_step_never_mixes_layouts(pre_neck):
    """No op of a CPU training step (forward or backward) takes two maps
    of one shape in different memory layouts: the fusion module computes
    in channels-last on the CPU (its depthwise convolution's fast layout)
    while the branches keep the default one, and an element-wise pass
    over two layouts is a slow path (the fusion convolutions' ReLU
    backward: several times slower, profiler). (A model in channels-last
    on the CPU gets default-layout gradients from PyTorch's own average
    pooling: the fused modules' tests cover gradients of either layout.)
    """
    torch.manual_seed(0)
    model = MODELS.build(ffl_cfg(fusion_pre_neck=pre_neck)).train()
    model.init_weights()
    x = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(4)]

    def step():
        losses = model.loss(x, samples)
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()

    assert mixed_layout_ops(step) == []
