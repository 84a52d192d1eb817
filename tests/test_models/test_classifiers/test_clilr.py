# Copyright (c) ffl_mm contributors.
"""ffl_mm's CL-ILR step equals the public code's (float64 round-off).

``tests/data/clilr_reference_r8x3_c100_f64.pt`` holds one training step of
CL-ILR from the OKDDip repository's code (ResNet-8, 3 heads, 100 classes,
float64; see ``tests/data/README.md``): a shared stem and stages 1-2 whose
gradient is divided by the number of heads in backward, three stage-3
heads, each distilled from the mean of the other heads' logits with the
target's graph kept. Its weights are mapped one to one into the model of
``configs/_base_/models/clilr_cifar-resnet32x3.py`` (depth 8, their KD
weight) trained with FFL's CIFAR schedule set to their optimiser; every
term, the total, every logit and target, every gradient, and every
parameter and buffer after three SGD steps agree to 1e-9 of the tensor's
largest value.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from conftest import REPO
from ffl_mm.registry import MODELS
from helpers.reference_steps import (DATA, assert_close, assert_grads_equal,
                                    assert_steps_equal, build_their_method)

MODEL = 'configs/_base_/models/clilr_cifar-resnet32x3.py'

#: Their module names -> ffl_mm's (first match wins).
RENAMES = [
    (r'^(conv1|bn1|layer1|layer2)\.', r'backbones.0.\1.'),
    (r'^layer3_(\d)\.', r'backbones.\1.layer3.'),
    (r'^classifier3_(\d)\.', r'heads.\1.fc.'),
]


@pytest.fixture(scope='module')
def ref():
    return torch.load(osp.join(DATA, 'clilr_reference_r8x3_c100_f64.pt'),
                      weights_only=True)


def _build(ref):
    return build_their_method(ref, MODEL, RENAMES)


def test_one_step_equals_the_reference(ref):
    model, optim_wrapper, samples = _build(ref)
    seen = {}
    for i, head in enumerate(model.heads):
        head.register_forward_hook(
            lambda m, args, out, i=i: seen.__setitem__(f'branch{i}', out))
    losses = model(ref['x'], samples, mode='loss')
    step1 = ref['step1']
    assert sorted(k for k in losses if k.startswith('loss')) == sorted(
        f'loss_{t}' for t in step1['terms'])
    for term, want in step1['terms'].items():
        assert losses[f'loss_{term}'].dtype == torch.float64, term
        assert_close(term, losses[f'loss_{term}'], want)
    loss, _ = model.parse_losses(losses)
    assert_close('total', loss, step1['loss'])
    n = ref['branches']
    for i in range(n):
        assert_close(f'logits branch{i}', seen[f'branch{i}'],
                     step1['logits'][f'branch{i}'])
        target = torch.stack([seen[f'branch{j}'] for j in range(n)
                              if j != i]).mean(dim=0)
        assert_close(f'target branch{i}', target,
                     step1['logits'][f'target_branch{i}'])
    assert_grads_equal(ref, model, loss, optim_wrapper, RENAMES)


def test_three_sgd_steps_equal_the_reference(ref):
    assert_steps_equal(ref, *_build(ref), RENAMES)


def test_grad_rescale_needs_a_shared_trunk_and_belongs_to_clilr():
    model_cfg = Config.fromfile(osp.join(REPO, MODEL)).model
    model_cfg.backbone.depth = 8
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        with pytest.raises(ValueError, match='shared_stages=0 shares '
                           'nothing; set shared_stages >= 1'):
            MODELS.build(dict(model_cfg, shared_stages=0))
        unscaled = MODELS.build(dict(model_cfg, shared_stages=0,
                                     grad_rescale=False))
        assert unscaled.predict_mode == 'ensemble'
        with pytest.raises(TypeError, match='grad_rescale belongs to '
                           'CLILRClassifier'):
            MODELS.build(dict(model_cfg, type='DMLClassifier',
                              branch_update='together'))


def test_the_trunk_gradient_is_divided_by_the_number_of_heads():
    """The shared stem's gradient with the rescaling is 1/N of the one
    without it (everything else equal)."""
    model_cfg = Config.fromfile(osp.join(REPO, MODEL)).model
    model_cfg.backbone.depth = 8
    grads = []
    for rescale in (True, False):
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('ffl_mm'):
            model = MODELS.build(dict(model_cfg, grad_rescale=rescale))
        model.init_weights()
        torch.manual_seed(1)
        x = torch.randn(4, 3, 32, 32)
        samples = [DataSample().set_gt_label(i) for i in range(4)]
        loss, _ = model.parse_losses(model(x, samples, mode='loss'))
        loss.backward()
        grads.append((model.backbones[0].conv1.weight.grad.clone(),
                      model.backbones[1].layer3[0].conv1.weight.grad))
    (stem_scaled, head_scaled), (stem, head) = grads
    torch.testing.assert_close(stem_scaled, stem / 3)
    torch.testing.assert_close(head_scaled, head)  # the heads' own stages
