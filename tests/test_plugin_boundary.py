# Copyright (c) ffl_mm contributors.
"""The plugin's edges: ``import ffl_mm`` only registers, the compat module
installs the checkpoint shims when asked, and our tools build exactly the
config that MMPretrain's own tools build, plus the documented additions."""
import copy
import glob
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

from conftest import REPO, shipped_config

FRESH = r'''
import sys
import mmengine, mmpretrain, torch  # noqa: F401 (what a user has already)
from mmengine.fileio import backends as io_backends
from mmengine.runner.checkpoint import CheckpointLoader

UNIX_ONLY = ('resource', 'fcntl', 'termios')


class NotHere:
    """As on Windows: Unix-only modules cannot be imported."""

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in UNIX_ONLY:
            raise ImportError(f'{name} does not exist on this platform')


for name in UNIX_ONLY:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, NotHere())


def state():
    from mmengine.fileio.backends.registry_utils import (backends,
                                                         prefix_to_backends)
    return (dict(backends), dict(prefix_to_backends),
            dict(CheckpointLoader._schemes))


before = state()
loaded_before = set(sys.modules)
assert 'ffl_mm' not in sys.modules

# MMPretrain's registries reach ffl_mm's types as ``ffl_mm.<Type>``: MMEngine
# imports ffl_mm.registry, whose locations register the rest (as MMPretrain's
# eval_metric.py builds ``--metric type=ffl_mm.MultiBranchAccuracy``).
import numpy as np  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmpretrain.registry import METRICS, MODELS, TRANSFORMS  # noqa: E402
with DefaultScope.overwrite_default_scope('mmpretrain'):
    metric = METRICS.build(dict(type='ffl_mm.MultiBranchAccuracy', topk=1))
    pad = TRANSFORMS.build(dict(type='ffl_mm.BorderPad', padding=1))
    padded = pad(dict(img=np.zeros((2, 2, 3), np.uint8)))['img']
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='ffl_mm.CIFARResNet', depth=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64,
                  init_cfg=dict(type='ffl_mm.TorchDefault', layer='Linear'))))
    model.init_weights()
assert type(metric).__name__ == 'MultiBranchAccuracy'
assert padded.shape == (4, 4, 3)
assert type(model.backbone).__name__ == 'CIFARResNet'
assert 'ffl_mm' in sys.modules

# importing ffl_mm (here by MMEngine; `import ffl_mm` is the same) only
# registers: no MMEngine state changed, no tooling, nothing Unix-only
import ffl_mm  # noqa: E402,F401
assert state() == before, 'import ffl_mm changed MMEngine'
new = sorted(set(sys.modules) - loaded_before)
tooling = [m for m in new if m.startswith(
    ('ffl_mm.apis', 'ffl_mm.engine.compat', 'ffl_mm.tools_support'))]
# (ffl_mm.engine.work_dir is the run's: SafeRunner takes the work-dir lock)
assert not tooling, tooling
assert not [m for m in new if m in UNIX_ONLY]

import ffl_mm.engine.compat  # noqa: E402,F401
from ffl_mm.engine import AtomicLocalBackend, load_from_safe_local  # noqa
from mmengine.fileio.backends.registry_utils import (backends,  # noqa: E402
                                                     prefix_to_backends)
assert CheckpointLoader._schemes[''] is load_from_safe_local
assert backends['local'] is AtomicLocalBackend
assert prefix_to_backends[''] is AtomicLocalBackend
print('boundary ok')
'''


@pytest.mark.e2e
def test_import_ffl_mm_only_registers_in_a_fresh_interpreter():
    """Also: scoped names build from MMPretrain's registries with ffl_mm
    not imported first."""
    out = subprocess.run([sys.executable, '-c', FRESH], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('boundary ok')


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tools():
    from ffl_mm.tools_support.mmpretrain_tools import mmpretrain_tool
    return dict(
        ours_train=_load(osp.join(REPO, 'tools', 'train.py'), 'ours_train'),
        ours_test=_load(osp.join(REPO, 'tools', 'test.py'), 'ours_test'),
        mmpretrain_train=mmpretrain_tool('train'),
        mmpretrain_test=mmpretrain_tool('test'))


def _diff(a, b, where=''):
    """Paths where two nested dicts/lists differ: ``{path: (a, b)}``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = {}
        for key in set(a) | set(b):
            out.update(_diff(a.get(key, '<missing>'), b.get(key, '<missing>'),
                             f'{where}.{key}' if where else key))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and \
            len(a) == len(b):
        out = {}
        for i, (x, y) in enumerate(zip(a, b)):
            out.update(_diff(x, y, f'{where}[{i}]'))
        return out
    return {} if a == b else {where: (a, b)}


CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    if '_base_' not in p)


@pytest.mark.parametrize('config', CONFIGS)
def test_tools_build_what_mmpretrain_tools_build(config, tools):
    """Same final config as MMPretrain's tools (``--tta`` included), but
    for the documented additions: ``persistent_workers=False`` where a
    loader has no workers, and (test) the checkpoint loaded strictly by the
    tool instead of through ``load_from``."""
    from ffl_mm.tools_support.mmpretrain_tools import parse_tool_args
    cfg = shipped_config(config)
    cases = [
        ('train', ['CFG', '--work-dir', 'w']),
        ('train', ['CFG', '--no-validate', '--no-pin-memory',
                   '--cfg-options', 'train_cfg.max_epochs=1']),
        ('test', ['CFG', 'ck.pth', '--work-dir', 'w']),
        ('test', ['CFG', 'ck.pth', '--tta']),
    ]
    for tool, argv in cases:
        ours = tools[f'ours_{tool}']
        theirs = tools[f'mmpretrain_{tool}']
        args = parse_tool_args(theirs, argv, tool)
        assert vars(ours.parse_args(argv)) == vars(args)
        want = theirs.merge_args(copy.deepcopy(cfg), args).to_dict()
        got = ours.merge_args(copy.deepcopy(cfg), args).to_dict()
        allowed = {}
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            loader = want.get(key) or {}
            if loader.get('num_workers', 0) == 0 and \
                    loader.get('persistent_workers'):
                allowed[f'{key}.persistent_workers'] = (True, False)
        if tool == 'test':
            allowed['load_from'] = ('ck.pth', None)
        assert _diff(want, got) == allowed, (tool, argv)
