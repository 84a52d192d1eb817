# Copyright (c) ffl_mm contributors.
"""Classifier initialisation: PyTorch's default (the FFL authors') in the
CIFAR configs, MMPretrain's in the ImageNet ones."""
import glob
import math
import os.path as osp

import pytest
import torch
import torch.nn as nn
from ffl_mm.registry import MODELS, WEIGHT_INITIALIZERS

import ffl_mm  # noqa: F401
from conftest import REPO, shipped_config


def _configs(pattern):
    return sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', pattern))
        if '_base_' not in p)


CIFAR = [c for c in _configs('*.py')
         if c.endswith(('_cifar10.py', '_cifar100.py', '_digits.py')) and
         'resnet18-cifar-w16' not in c]  # a stock MMPretrain classifier
IMAGENET = _configs('*_imagenet.py')


def test_torch_default_equals_a_fresh_linear_layer():
    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Linear(64, 10))
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Linear(64, 10))
    for p in model.parameters():
        nn.init.zeros_(p)
    init = WEIGHT_INITIALIZERS.build(dict(type='TorchDefault',
                                          layer='Linear'))
    torch.manual_seed(0)
    nn.Conv2d(3, 4, 1)  # the same draws before the Linear layer
    init(model)
    assert torch.equal(model[1].weight, fresh[1].weight)
    assert torch.equal(model[1].bias, fresh[1].bias)
    # other layer types are left alone
    assert not model[0].weight.any() and not model[0].bias.any()


@pytest.mark.parametrize('cfg, match', [
    (dict(), 'give `layer`'),
    (dict(layer='Linear', std=0.01), r"\['std'\]"),
])
def test_torch_default_errors(cfg, match):
    with pytest.raises((ValueError, TypeError), match=match):
        WEIGHT_INITIALIZERS.build(dict(type='TorchDefault', **cfg))


def _heads(model_cfg):
    heads = [model_cfg['head']]
    if model_cfg.get('fusion_head'):
        heads.append(model_cfg['fusion_head'])
    return heads


@pytest.mark.parametrize('config', CIFAR)
def test_cifar_configs_init_classifiers_like_the_authors(config):
    model_cfg = shipped_config(config).model
    for head in _heads(model_cfg):
        assert head.get('init_cfg') == dict(type='TorchDefault',
                                            layer='Linear'), config


@pytest.mark.parametrize('config', IMAGENET)
def test_imagenet_configs_keep_mmpretrain_init(config):
    model_cfg = shipped_config(config).model
    for head in _heads(model_cfg):
        assert head.get('init_cfg') is None, config


def test_initialised_ffl_model_has_uniform_classifiers():
    """After ``init_weights`` (as the Runner calls it), every classifier
    of the CIFAR FFL model is uniform in ±1/sqrt(64), bias included, and
    the convolutions are Kaiming normal (fan_out), BN 1/0."""
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_cifar100.py')
    torch.manual_seed(0)
    # no default scope: found outside a Runner too
    model = MODELS.build(cfg.model)
    model.init_weights()
    bound = 1 / math.sqrt(64)
    for fc in (model.heads[0].fc, model.heads[1].fc, model.fusion_head.fc):
        for p in (fc.weight, fc.bias):
            assert p.abs().max() <= bound
            # uniform(-b, b): std b/sqrt(3); Normal(0, 0.01) would be 0.01
            assert p.std().item() == pytest.approx(bound / math.sqrt(3),
                                                   rel=0.15)
    conv = model.backbones[1].layer3[1].conv1.weight  # 64 x 64 x 3 x 3
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)),
                                              rel=0.05)
    bn = model.backbones[0].bn1
    assert bool((bn.weight == 1).all()) and not bn.bias.any()
