# Copyright (c) ffl_mm contributors.
"""The AMP path (MMEngine's ``AmpOptimWrapper``) on a CPU.

MMEngine refuses ``AmpOptimWrapper`` without a GPU; with that check
lifted it runs the step under ``autocast`` on the CPU (bfloat16) with the
loss scaler disabled, which exercises everything of ours that mixed
precision touches: the fusion and MFEF modules under autocast, the KD and
CE terms in float32, the recomputed MFEF chain, the step and the
wrapper's state.
"""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from ffl_mm.models.losses import MutualKDLoss
from conftest import ffl_cfg

pytestmark = [
    pytest.mark.filterwarnings('ignore:`torch.cuda.amp.GradScaler'),
    pytest.mark.filterwarnings('ignore:torch.cuda.amp.GradScaler is enabled'),
]
MFEF = [dict(type='MultiScaleNeck'), dict(type='DualAttentionNeck')]


@pytest.fixture
def cpu_amp(monkeypatch):
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    monkeypatch.setattr(amp_module, 'is_cuda_available', lambda: True)


def _batch(n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return dict(
        inputs=list(
            torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                          generator=gen)),
        data_samples=[DataSample().set_gt_label(i % 10) for i in range(n)])


def test_kd_terms_are_float32_from_low_precision_logits():
    torch.manual_seed(0)
    branches = [torch.randn(8, 10) * 4 for _ in range(2)]
    fused = torch.randn(8, 10) * 4
    loss = MutualKDLoss(rampup=0)
    exact = loss(branches, fused)
    low = loss([b.bfloat16() for b in branches], fused.bfloat16())
    for key, value in exact.items():
        assert low[key].dtype == torch.float32, key
        # only the rounding of the logits to bfloat16 differs
        torch.testing.assert_close(low[key], value, rtol=0.03, atol=0.01)


@pytest.mark.parametrize('extra', [
    dict(),
    dict(fusion_pre_neck=MFEF),
    dict(fusion_pre_neck=MFEF, fusion_pre_neck_with_cp=True),
], ids=['ffl', 'mfef', 'mfef-recompute'])
def test_amp_optim_wrapper_trains_on_cpu(cpu_amp, extra):
    torch.manual_seed(0)
    model = MODELS.build(ffl_cfg(**extra))
    model.init_weights()
    model.train()
    reference = copy.deepcopy(model)
    wrapper = build_optim_wrapper(
        model,
        dict(
            type='AmpOptimWrapper',
            optimizer=dict(type='SGD', lr=0.05, momentum=0.9)))
    data = model.data_preprocessor(_batch(), True)
    with wrapper.optim_context(model):
        fused = model._forward_all(data['inputs'])[1]['fused']
        losses = model.loss(data['inputs'], data['data_samples'])
    # autocast is on: the classifiers ran in bfloat16 ...
    assert fused.dtype == torch.bfloat16
    # ... and every loss term came out in float32, close to full precision
    full = reference.loss(data['inputs'], data['data_samples'])
    for key, value in full.items():
        if key.startswith('loss'):
            assert losses[key].dtype == torch.float32, key
            assert torch.isfinite(losses[key]), key
            torch.testing.assert_close(
                losses[key], value, rtol=0.05, atol=0.02, msg=key)

    before = [p.detach().clone() for p in model.parameters()]
    for seed in range(2):
        log_vars = model.train_step(_batch(seed=seed), wrapper)
        assert torch.isfinite(log_vars['loss'])
    changed = [not torch.equal(a, p)
               for a, p in zip(before, model.parameters())]
    assert all(changed), 'every parameter is updated'
    assert all(p.dtype == torch.float32 for p in model.parameters())
