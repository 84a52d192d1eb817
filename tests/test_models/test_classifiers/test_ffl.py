# Copyright (c) ffl_mm contributors.
"""FFLClassifier: its step equals the FFL authors' step (float64
round-off); its parameter counts match theirs; the fusion module's weight
decay and branch count follow the config.

``tests/data/ffl_reference_r8x2_c100_f64.pt`` holds one training step of
the authors' public code (ResNet-8x2, 100 classes, float64; see
``tests/data/README.md``). Their weights are mapped one to one into the
model of ``configs/ffl/ffl_resnet32x2_cifar100.py`` with ``depth=8``; the
batch goes through ``model(..., mode='loss')`` and the config's own
``optim_wrapper``. Every loss term, the logits, every gradient and every
parameter and buffer after three SGD steps must agree to 1e-9 of the
tensor's largest value.
"""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from conftest import REPO, count_params, ffl_cfg, shipped_config

REFERENCE = osp.join(REPO, 'tests', 'data', 'ffl_reference_r8x2_c100_f64.pt')
CONFIG = osp.join(REPO, 'configs', 'ffl', 'ffl_resnet32x2_cifar100.py')
TOL = 1e-9

#: The authors' module names -> ffl_mm's (first match wins).
RENAMES = [
    (r'^model\.(conv1|bn1|layer1|layer2)\.', r'backbones.0.\1.'),
    (r'^model\.layer3_(\d)\.', lambda m: f'backbones.{int(m[1]) - 1}.layer3.'),
    (r'^model\.classfier3_(\d)\.', lambda m: f'heads.{int(m[1]) - 1}.fc.'),
    (r'^module\.conv1\.', 'fusion_neck.depthwise.conv.'),
    (r'^module\.bn1\.', 'fusion_neck.depthwise.bn.'),
    (r'^module\.conv1_1\.', 'fusion_neck.pointwise.conv.'),
    (r'^module\.bn1_1\.', 'fusion_neck.pointwise.bn.'),
    (r'^module\.fc2\.', 'fusion_head.fc.'),
]


def ours(name):
    for pattern, repl in RENAMES:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    raise KeyError(f'no mapping for the authors\' {name}')


def assert_close(name, got, want, tol=TOL):
    got, want = got.detach().double(), want.detach().double()
    assert got.shape == want.shape, name
    scale = want.abs().max().item() or 1.0
    err = (got - want).abs().max().item()
    assert err <= tol * scale, f'{name}: max |diff| {err:.3g}, scale ' \
        f'{scale:.3g}'


@pytest.fixture(scope='module')
def reference():
    return torch.load(REFERENCE, weights_only=True)


@pytest.fixture
def setup(reference):
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.depth = reference['depth']
    model = MODELS.build(cfg.model).double().train()
    state = {ours(k): v for k, v in reference['authors_state'].items()}
    # every entry maps one to one, in both directions
    assert sorted(state) == sorted(model.state_dict())
    model.load_state_dict(
        {k: v.double() if v.is_floating_point() else v
         for k, v in state.items()}, strict=True)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    samples = [DataSample().set_gt_label(int(y)) for y in reference['y']]
    # the KD ramp has ended at epoch 80 (w = 1, the reference's weight)
    hub = MessageHub.get_instance('test_ffl_equivalence')
    hub.update_info('epoch', 80)
    return model, optim_wrapper, samples


def _logits(model):
    """Forward hooks that keep each head's output."""
    seen = {}
    heads = {f'branch{i}': h for i, h in enumerate(model.heads)}
    heads['fused'] = model.fusion_head
    for name, head in heads.items():
        head.register_forward_hook(
            lambda m, i, out, name=name: seen.__setitem__(name, out))
    return seen


def test_one_step_equals_the_authors(reference, setup):
    model, optim_wrapper, samples = setup
    assert reference['kd_weight'] == 1.0
    assert model.distill_loss.current_weight() == 1.0
    assert model.distill_loss.temperature == reference['temperature']
    logits = _logits(model)
    losses = model(reference['x'], samples, mode='loss')
    step1 = reference['step1']
    for name, want in step1['terms'].items():
        got = losses['loss_' + name]
        assert got.dtype == torch.float64, name
        assert_close(name, got, want)
    loss, _ = model.parse_losses(losses)
    assert_close('total', loss, step1['loss'])
    for name, want in step1['logits'].items():
        assert_close(f'logits {name}', logits[name], want)
    optim_wrapper.backward(loss)
    params = dict(model.named_parameters())
    assert sorted(ours(k) for k in step1['grads']) == sorted(params)
    for name, want in step1['grads'].items():
        assert_close(f'grad {name}', params[ours(name)].grad, want)


def test_three_sgd_steps_equal_the_authors(reference, setup):
    model, optim_wrapper, samples = setup
    # weight decay 1e-4 for the network, 1e-5 for the fusion module
    decays = {
        p: g['weight_decay']
        for g in optim_wrapper.optimizer.param_groups for p in g['params']
    }
    for name, p in model.named_parameters():
        fusion = name.startswith(('fusion_neck', 'fusion_head'))
        assert decays[p] == pytest.approx(1e-5 if fusion else 1e-4), name
    for _ in range(reference['steps']):
        losses = model(reference['x'], samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)
    state = model.state_dict()
    assert len(reference['after_steps']) == len(state)
    for name, want in reference['after_steps'].items():
        assert_close(f'after steps {name}', state[ours(name)], want)


@pytest.mark.parametrize('depth, num_classes, total, fusion', [
    (32, 100, 849148, 16228),
    (32, 10, 831598, None),
    (110, 100, 3074748, None),
])
def test_parameter_counts_match_the_authors(depth, num_classes, total,
                                            fusion):
    model = MODELS.build(ffl_cfg(depth=depth, num_classes=num_classes))
    assert count_params(model) == total
    if fusion is not None:
        assert count_params(model.fusion_neck) + \
            count_params(model.fusion_head) == fusion
        # shared trunk + two stage-3 copies with classifiers: 832,920
        assert total - fusion == 832920


def test_fusion_weight_decay_through_paramwise_cfg():
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_cifar100.py')
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[names[id(p)]] = group['weight_decay']
    assert decay['fusion_neck.depthwise.conv.weight'] == pytest.approx(1e-5)
    assert decay['fusion_head.fc.weight'] == pytest.approx(1e-5)
    assert decay['backbones.1.layer3.0.conv1.weight'] == pytest.approx(1e-4)
    assert decay['heads.0.fc.weight'] == pytest.approx(1e-4)
    assert wrapper.optimizer.defaults['nesterov'] is True


def test_num_branches_from_the_command_line():
    """``--cfg-options model.num_branches=3`` on a shipped config: the
    fusion neck's branch count and channels follow (nothing hard-coded)."""
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_cifar100.py')
    cfg.merge_from_dict({'model.num_branches': 3})
    model = MODELS.build(cfg.model)
    assert len(model.heads) == 3
    assert model.fusion_neck.in_channels == [64, 64, 64]
    assert model.output_names[:3] == ['branch0', 'branch1', 'branch2']
