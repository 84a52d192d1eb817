# Copyright (c) ffl_mm contributors.
"""The package and the configs it ships: every config loads, keeps the
state-dict keys and shapes its checkpoints were saved with
(``tests/data/state_dict_shapes.json``, see ``tests/data/README.md``),
matches its model-zoo metadata, and trains a step."""
import glob
import json
import os.path as osp

import pytest
from ffl_mm.registry import MODELS

import ffl_mm
from conftest import REPO, shipped_config

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)

with open(osp.join(REPO, 'tests', 'data', 'state_dict_shapes.json')) as f:
    RECORDED = json.load(f)


def _metafile_models():
    import yaml
    models = {}
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    for meta in index['Import']:
        with open(osp.join(REPO, meta)) as f:
            for model in yaml.safe_load(f)['Models']:
                models[model['Config']] = model
    return models


METAFILE = _metafile_models()


def test_every_shipped_config_is_recorded_and_in_the_model_zoo():
    """Every config's state dict is recorded (a new one deliberately, by
    ``make state-dict-record``), and every config of a method's folder (one
    with a metafile.yml, listed in model-index.yml) has a model-zoo
    entry."""
    names = sorted(osp.relpath(p, REPO) for p in CONFIGS)
    new = sorted(set(names) - set(RECORDED))
    assert not new, f'not recorded: {new}; run `make state-dict-record`'
    assert sorted(RECORDED) == names, 'configs gone: make state-dict-record'
    import yaml
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imported = sorted(yaml.safe_load(f)['Import'])
    metafiles = sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))
    assert imported == metafiles
    method_configs = [n for n in names
                      if osp.dirname(n) + '/metafile.yml' in metafiles]
    assert sorted(METAFILE) == method_configs


def test_installed_version_is_the_package_version():
    """The installed distribution (what pip and mim report) is this
    checkout's version."""
    from importlib.metadata import version
    assert version('ffl_mm') == ffl_mm.__version__


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
    cfg = shipped_config(path)
    assert cfg.custom_imports['imports'] == ['ffl_mm', 'ffl_mm.engine.compat']
    model = MODELS.build(cfg.model)
    # checkpoints keep loading: keys and shapes as recorded
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    want = RECORDED[osp.relpath(path, REPO)]
    assert sorted(set(got) - set(want)) == [], 'new keys'
    assert sorted(set(want) - set(got)) == [], 'missing keys'
    assert {k: (want[k], got[k]) for k in want if got[k] != want[k]} == {}
    meta = METAFILE.get(osp.relpath(path, REPO))
    if meta is not None:
        assert meta['Metadata']['Parameters'] == sum(
            p.numel() for p in model.parameters())
        assert meta['Metadata']['Epochs'] == cfg.train_cfg.max_epochs
    # the optimizer as the Runner builds it (in the config's scope: every
    # paramwise custom key matches a parameter)
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        build_optim_wrapper(model, cfg.optim_wrapper)
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
