# Copyright (c) ffl_mm contributors.
"""What only a CUDA device can check: mixed precision (fp16) training of
every method, the recomputation switch and ``compile=True`` against eager,
channels-last, and a two-process NCCL run that resumes.

Marked ``cuda``: ``make test-gpu`` runs them (``make gpu-check`` adds the
benchmark and writes a report); without CUDA each is skipped, saying so.
"""
import copy
import os
import re
import sys

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import ffl_mm  # noqa: F401
from conftest import REPO, TINY_DIGITS, free_port, run_cmd, shipped_config
from ffl_mm.apis.model_cfg import runner_model_cfg
from ffl_mm.registry import MODELS
from helpers.lab import lab

synthetic_batch = lab('benchmark').synthetic_batch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='needs a CUDA device (make test-gpu)'),
]

#: what GPUs train with (the CPU's autocast has bfloat16 only)
AMP_DTYPE = 'float16'
DIGITS = {
    'ffl': 'configs/ffl/ffl_resnet32x2_digits.py',
    'mfef': 'configs/mfef/mfef_resnet32x2_digits.py',
    'dml': 'configs/dml/dml_resnet32x2_digits.py',
    'one': 'configs/one/one_resnet32x2_digits.py',
}


def _model(config, device='cuda', **changes):
    cfg = runner_model_cfg(shipped_config(config))
    cfg.update(changes)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        model = MODELS.build(cfg)
    model.init_weights()
    return model.to(device).train()


def _batch(seed, device='cuda'):
    batch = synthetic_batch(8, 32, 10, seed=seed)
    batch['inputs'] = batch['inputs'].to(device)
    return batch


@pytest.mark.parametrize('method', sorted(DIGITS))
def test_amp_fp16_two_iterations_close_to_fp32(method):
    """MMEngine's AmpOptimWrapper (float16, loss scaling) on each method's
    digits model: two iterations with finite losses close to the same
    model's float32 ones."""
    full = _model(DIGITS[method])
    half = copy.deepcopy(full)
    sgd = dict(type='SGD', lr=0.01, momentum=0.9)
    wrappers = {
        'fp32': build_optim_wrapper(full, dict(optimizer=sgd)),
        'fp16': build_optim_wrapper(half, dict(
            type='AmpOptimWrapper', dtype=AMP_DTYPE, optimizer=sgd)),
    }
    for seed in range(2):
        logs = {
            'fp32': full.train_step(_batch(seed), wrappers['fp32']),
            'fp16': half.train_step(_batch(seed), wrappers['fp16']),
        }
        for key, value in logs['fp32'].items():
            if 'loss' not in key:
                continue
            low = logs['fp16'][key]
            assert torch.isfinite(low), (method, seed, key)
            torch.testing.assert_close(low.float(), value.float(), rtol=0.05,
                                       atol=0.05, msg=f'{method} {key}')
    assert all(p.dtype == torch.float32 for p in half.parameters())


def _loss_and_grads(model, batch):
    data = model.data_preprocessor(batch, True)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    loss, _ = model.parse_losses(losses)
    model.zero_grad()
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone()
                           for n, p in model.named_parameters()
                           if p.grad is not None}


def _assert_same_step(a, b, batch, rtol, atol):
    loss_a, grads_a = _loss_and_grads(a, batch)
    loss_b, grads_b = _loss_and_grads(b, batch)
    torch.testing.assert_close(loss_b, loss_a, rtol=rtol, atol=atol)
    assert set(grads_a) == set(grads_b)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=rtol,
                                   atol=atol, msg=name)
    for (name, x), y in zip(a.named_buffers(), b.buffers()):
        torch.testing.assert_close(y, x, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize('with_cp', [True, 'selective'])
def test_recomputed_mfef_chain_equals_the_plain_one_on_cuda(with_cp):
    """The memory switch (``fusion_pre_neck_with_cp``, True by default:
    recompute the MFEF chain in backward; ``'selective'``: keep its
    convolution results) against the plain chain: the same loss,
    gradients and BN running statistics."""
    from ffl_mm.models.utils.recompute import out_of_place_activations
    plain = _model(DIGITS['mfef'])
    plain.fusion_pre_necks.with_cp = False
    recomputed = copy.deepcopy(plain)
    recomputed.fusion_pre_necks.with_cp = with_cp
    if with_cp == 'selective':
        out_of_place_activations(recomputed.fusion_pre_necks)
    _assert_same_step(plain, recomputed, _batch(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('method', ['ffl', 'mfef'])
def test_compiled_model_equals_eager_on_cuda(method):
    """``compile=True`` (inductor, ffl_mm's compile of images to logits)
    against the same model eager."""
    from ffl_mm.engine.compile import compile_model
    eager = _model(DIGITS[method])
    compiled = copy.deepcopy(eager)
    compile_model(compiled, dict(backend='inductor'))
    _assert_same_step(eager, compiled, _batch(0), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('method', ['ffl', 'mfef'])
def test_channels_last_equals_the_default_layout_on_cuda(method):
    default = _model(DIGITS[method])
    channels_last = copy.deepcopy(default).to(
        memory_format=torch.channels_last)
    batch = _batch(0)
    with torch.no_grad():
        want = default(default.data_preprocessor(batch)['inputs'])
        x = channels_last.data_preprocessor(batch)['inputs']
        got = channels_last(x.contiguous(memory_format=torch.channels_last))
    for name, logits in want.items():
        torch.testing.assert_close(got[name], logits, rtol=1e-3, atol=1e-4,
                                   msg=name)


@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason='NCCL runs one process per GPU: needs 2 GPUs')
def test_two_process_nccl_run_resumes(tmp_path):
    """tools/dist_train.sh with NCCL on 2 GPUs: a run of one epoch, then
    ``--resume`` to the second, one log and one set of checkpoints."""
    work = tmp_path / 'work'
    config = os.path.join(REPO, DIGITS['ffl'])
    env = dict(PYTHON=sys.executable, PORT=free_port())
    options = [*TINY_DIGITS, 'train_cfg.val_interval=100',
               'default_hooks.checkpoint.interval=1']
    _, out = run_cmd(['bash', 'tools/dist_train.sh', config, '2',
                      '--work-dir', str(work), '--cfg-options', *options,
                      'train_cfg.max_epochs=1'], env=env, timeout=600)
    assert 'initialised the gloo process group' not in out  # NCCL
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', out)
    _, out = run_cmd(['bash', 'tools/dist_train.sh', config, '2',
                      '--work-dir', str(work), '--resume', '--cfg-options',
                      *options, 'train_cfg.max_epochs=2'], env=env,
                     timeout=600)
    assert 'resumed epoch: 1' in out
    assert re.search(r'Epoch\(train\) \[2\]\[2/2\]', out)
    assert sorted(p.name for p in work.glob('*.pth')) == [
        'epoch_1.pth', 'epoch_2.pth']
