# Copyright (c) ffl_mm contributors.
"""Installation, registration and the configs that ship with the package."""
import glob
import os
import os.path as osp

import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS, MODELS

import ffl_mm
from conftest import REPO

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def test_version():
    assert isinstance(ffl_mm.__version__, str)
    assert ffl_mm.version_info[:2] == tuple(
        int(x) for x in ffl_mm.__version__.split('.')[:2])


def test_components_live_in_mmpretrain_registries():
    assert DATASETS.get('Digits') is ffl_mm.datasets.Digits
    # one registry: no ffl_mm scope of its own
    assert DATASETS.scope == 'mmpretrain' and MODELS.scope == 'mmpretrain'


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


def test_wheel_carries_configs_and_tools(tmp_path):
    """A non-editable build copies configs/ and tools/ into ffl_mm/.mim."""
    import shutil
    import subprocess
    import sys
    import zipfile
    src = tmp_path / 'src'
    for item in ('ffl_mm', 'configs', 'tools', 'requirements'):
        shutil.copytree(
            osp.join(REPO, item),
            src / item,
            symlinks=False,
            ignore=shutil.ignore_patterns('.mim', '__pycache__', '*.egg-info'))
    for item in ('setup.py', 'model-index.yml', 'README.md'):
        if osp.exists(osp.join(REPO, item)):
            shutil.copy(osp.join(REPO, item), src / item)
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w',
        str(tmp_path / 'dist'),
        str(src)
    ],
                   check=True,
                   capture_output=True)
    wheel, = (tmp_path / 'dist').glob('ffl_mm-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert 'ffl_mm/.mim/tools/train.py' in names
    assert 'ffl_mm/.mim/tools/dist_train.sh' in names
    assert 'ffl_mm/.mim/model-index.yml' in names
    assert 'ffl_mm/.mim/configs/_base_/default_runtime.py' in names
    assert 'ffl_mm/.mim/configs/baselines/resnet18-cifar-w16_digits.py' in \
        names

    # Installed from the wheel, a user config can inherit ours by package
    # scope, as with `mmpretrain::`.
    site = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
        str(site),
        str(wheel)
    ],
                   check=True,
                   capture_output=True)
    user_cfg = tmp_path / 'mine.py'
    user_cfg.write_text(
        "_base_ = ['ffl_mm::baselines/resnet18-cifar-w16_digits.py']\n"
        'train_cfg = dict(max_epochs=3)\n')
    script = ('import ffl_mm; from mmengine.config import Config; '
              f'cfg = Config.fromfile({str(user_cfg)!r}); '
              'print(ffl_mm.__file__, cfg.train_cfg.max_epochs, '
              'cfg.model.backbone.type)')
    out = subprocess.run([sys.executable, '-c', script],
                         cwd=str(tmp_path),
                         env=dict(os.environ, PYTHONPATH=str(site)),
                         check=True,
                         capture_output=True,
                         text=True).stdout
    assert out.split()[-3:] == [
        str(site / 'ffl_mm' / '__init__.py'), '3', 'ResNet_CIFAR'
    ]
