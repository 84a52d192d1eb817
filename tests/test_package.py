# Copyright (c) ffl_mm contributors.
"""Installation, registration and the configs that ship with the package."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from ffl_mm.registry import MODELS

import ffl_mm
from conftest import REPO

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def test_version():
    assert isinstance(ffl_mm.__version__, str)
    assert ffl_mm.version_info[:2] == tuple(
        int(x) for x in ffl_mm.__version__.split('.')[:2])


def test_configs_and_tools_ship_under_mim():
    mim = osp.join(osp.dirname(ffl_mm.__file__), '.mim')
    assert osp.isfile(osp.join(mim, 'tools', 'train.py'))
    assert osp.isfile(osp.join(mim, 'tools', 'dist_train.sh'))
    assert osp.isfile(
        osp.join(mim, 'configs', 'baselines', 'resnet18-cifar-w16_digits.py'))


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.relpath(p, REPO) for p in CONFIGS])
def test_every_config_loads_builds_and_trains_a_step(path):
    import torch
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'] == ['ffl_mm', 'ffl_mm.engine.compat']
    model = MODELS.build(cfg.model)
    model.init_weights()
    size = 64 if 'imagenet' in path else 32
    num_classes = cfg.data_preprocessor.num_classes
    inputs = torch.randn(2, 3, size, size)
    samples = [DataSample().set_gt_label(i) for i in (0, num_classes - 1)]
    losses = model(inputs, samples, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    model.eval()
    with torch.no_grad():
        preds = model(inputs, samples, mode='predict')
    assert preds[0].pred_score.shape == (num_classes, )
