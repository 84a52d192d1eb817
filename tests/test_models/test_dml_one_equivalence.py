# Copyright (c) ffl_mm contributors.
"""ffl_mm's DML and ONE steps equal the public code's (float64 round-off).

``tests/data/{dml,one}_reference_*.pt`` hold one training step of DML (the
OKDDip code, peers detached) and of ONE (the ONE authors' code), 2 and 3
branches, float64, ResNet-8 (see ``tests/data/README.md``). Their weights
are mapped one to one into the models of ``configs/dml`` and
``configs/one`` (depth 8, the reference's branches and classes, their
temperature and optimiser settings); the batch goes through
``model(..., mode='loss')`` and the config's ``optim_wrapper``. Every loss
term, the logits (and ONE's gate weights), every gradient, and every
parameter and buffer after three SGD steps agree to 1e-9 of the tensor's
largest value.
"""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from conftest import REPO
from helpers.reference_steps import (DATA, assert_close, assert_grads_equal,
                                    assert_steps_equal, build_from_reference)

CASES = {
    'dml_r8x2_c100': ('dml_reference_r8x2_c100_f64.pt',
                      'configs/dml/dml_resnet32x2_cifar100.py'),
    'dml_r8x3_c10': ('dml_reference_r8x3_c10_f64.pt',
                     'configs/dml/dml_resnet32x2_cifar100.py'),
    'one_r8x2_c100': ('one_reference_r8x2_c100_f64.pt',
                      'configs/one/one_resnet32x2_cifar100.py'),
    'one_r8x3_c100': ('one_reference_r8x3_c100_f64.pt',
                      'configs/one/one_resnet32x3_cifar100.py'),
}

#: Their module names -> ffl_mm's (first match wins).
DML_RENAMES = [
    (r'^stu(\d+)\.fc\.', r'heads.\1.fc.'),
    (r'^stu(\d+)\.', r'backbones.\1.'),
]
ONE_RENAMES = [
    (r'^(conv1|bn1|layer1|layer2)\.', r'backbones.0.\1.'),
    (r'^layer3_(\d)\.', lambda m: f'backbones.{int(m[1]) - 1}.layer3.'),
    (r'^classfier3_(\d)\.', lambda m: f'heads.{int(m[1]) - 1}.fc.'),
    (r'^control_v1\.', 'ensemble_head.fc.'),
    (r'^bn_v1\.', 'ensemble_head.bn.'),
]


@pytest.fixture(scope='module', params=sorted(CASES))
def case(request):
    name = request.param
    file, config = CASES[name]
    return name, torch.load(osp.join(DATA, file), weights_only=True), config


def _build(case):
    name, ref, config = case
    cfg = Config.fromfile(osp.join(REPO, config))
    model_cfg = cfg.model
    model_cfg.backbone.depth = ref['depth']
    model_cfg.num_branches = ref['nets'] if 'nets' in ref else \
        ref['branches']
    if ref['classes'] != model_cfg.head.num_classes:
        model_cfg.head.num_classes = ref['classes']
    model_cfg.distill_loss.temperature = ref['temperature']
    model_cfg.distill_loss.rampup = None  # the references use w = 1
    if name.startswith('dml'):
        # OKDDip updates the networks together from one summed loss
        model_cfg.branch_update = 'together'
    renames = DML_RENAMES if name.startswith('dml') else ONE_RENAMES
    return (*build_from_reference(ref, model_cfg, cfg.optim_wrapper,
                                  renames), renames)


def _head_outputs(model):
    """Forward hooks that keep each head's (and the gate's) output."""
    seen = {}
    for i, head in enumerate(model.heads):
        head.register_forward_hook(
            lambda m, i_, out, i=i: seen.__setitem__(f'branch{i}', out))
        head.register_forward_hook(
            lambda m, i_, out, i=i: seen.__setitem__(f'net{i}', out))
    if getattr(model, 'ensemble_head', None) is not None:
        model.ensemble_head.register_forward_hook(
            lambda m, i_, out: seen.__setitem__('ensemble', out))
        model.ensemble_head.register_forward_pre_hook(
            lambda m, args: seen.__setitem__('gate_input', args[0]))
        model.ensemble_head.bn.register_forward_hook(
            lambda m, i_, out: seen.__setitem__('gate_bn_out', out))
    return seen


def test_one_step_equals_the_reference(case):
    name, ref, _ = case
    model, optim_wrapper, samples, renames = _build(case)
    seen = _head_outputs(model)
    losses = model(ref['x'], samples, mode='loss')
    step1 = ref['step1']
    for term, want in step1['terms'].items():
        key = 'loss_' + re.sub(r'net(\d)', lambda m: f'branch{m[1]}', term)
        assert losses[key].dtype == torch.float64, key
        assert_close(term, losses[key], want)
    assert sorted(k for k in losses if k.startswith('loss')) == sorted(
        'loss_' + re.sub(r'net(\d)', lambda m: f'branch{m[1]}', t)
        for t in step1['terms'])
    loss, _ = model.parse_losses(losses)
    assert_close('total', loss, step1['loss'])
    for out, want in step1['logits'].items():
        assert_close(f'logits {out}', seen[out], want)
    if 'gate' in step1:
        with torch.no_grad():  # the same batch: the same batch statistics
            gate = model.ensemble_head.gate(seen['gate_input'])
        assert_close('gate', gate, step1['gate'])
        assert_close('gate_bn_out', seen['gate_bn_out'], step1['gate_bn_out'])
    assert_grads_equal(ref, model, loss, optim_wrapper, renames,
                       set(ref.get('grads_zero_up_to_roundoff') or []))


def test_three_sgd_steps_equal_the_reference(case):
    _, ref, _ = case
    assert_steps_equal(ref, *_build(case))


