# Copyright (c) ffl_mm contributors.
import hashlib
import importlib.util
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

# The suite runs as ffl_mm's configs and tools do: with the safe checkpoint
# loader and the atomic writer installed for the whole session (the plugin
# boundary itself is tested in a fresh interpreter).
import ffl_mm.engine.compat  # noqa: E402,F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _read_metafiles_once():
    """MMEngine resolves every ``mmpretrain::`` base by reading all of
    MMPretrain's model-zoo metafiles (85 YAML files, about 0.2 s) and then
    takes the base path when the config is not a model-zoo entry. The files
    do not change during a session: each answer (or error) is kept."""
    from mmengine.config import utils
    original = utils._get_cfg_metainfo
    answers = {}

    def cached(package_path, cfg_path):
        key = (package_path, cfg_path)
        if key not in answers:
            try:
                answers[key] = (True, original(package_path, cfg_path))
            except ValueError as error:
                answers[key] = (False, error)
        ok, value = answers[key]
        if not ok:
            raise value
        return value

    utils._get_cfg_metainfo = cached


_read_metafiles_once()

# Small, fast overrides for end-to-end runs on the digits data.
TINY_DIGITS = [
    'train_dataloader.dataset.indices=64',
    'train_dataloader.batch_size=16',
    'train_dataloader.num_workers=0',
    'val_dataloader.dataset.indices=40',
    'val_dataloader.batch_size=20',
    'val_dataloader.num_workers=0',
    'test_dataloader.dataset.indices=40',
    'test_dataloader.batch_size=20',
    'test_dataloader.num_workers=0',
    'default_hooks.logger.interval=1',
    'train_cfg.val_interval=1',
    'randomness.seed=0',
]


def run_cmd(cmd, timeout=300, env=None, check=True):
    """Run a command from the repository root; return (returncode, output).

    On ``check`` a non-zero exit fails the test and shows the output.
    """
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    full_env.update(env or {})
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(map(str, cmd))} exited with '
                    f'{proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc.returncode, proc.stdout


def run_tool(tool, *args, **kwargs):
    """Run ``tools/<tool>`` with this interpreter."""
    return run_cmd([sys.executable, osp.join(REPO, 'tools', tool), *args],
                   **kwargs)


def free_port() -> str:
    """A TCP port that nothing listens on now (bound to port 0 and
    released), for torchrun's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


_CONFIGS = {}


def shipped_config(path):
    """A shipped config (``configs/...``, relative to the repository or
    absolute), parsed once per session: parsing one that inherits through
    ``mmpretrain::`` takes a large part of a second. Each call returns its
    own copy."""
    import copy

    from mmengine.config import Config
    path = osp.join(REPO, path)
    if path not in _CONFIGS:
        _CONFIGS[path] = Config.fromfile(path)
    return copy.deepcopy(_CONFIGS[path])


_TOOLS = {}
_LAST_RUN = [0]


def distinct_second():
    """Wait until the second after the previous in-process tool run
    began: MMEngine names a Runner's logger, message hub and scope after
    the second it starts, and two runs in one second would share them."""
    import time
    if int(time.time()) == _LAST_RUN[0]:
        time.sleep(1 - time.time() % 1)
    _LAST_RUN[0] = int(time.time())


def tool_module(name):
    """``tools/<name>`` loaded as a module (once), to call its ``main(argv)``
    in this process where a subprocess is not the point."""
    if name not in _TOOLS:
        spec = importlib.util.spec_from_file_location(
            'ffl_tool_' + name.replace('/', '_')[:-3],
            osp.join(REPO, 'tools', name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TOOLS[name] = module
    return _TOOLS[name]


@pytest.fixture
def run_in_process(monkeypatch, capsys):
    """Call ``tools/<name>``'s ``main(argv)`` here; returns ``(result,
    output)``. The CPU allocator tuning of tools/train.py stays off: it
    would change this process for the tests after it."""
    monkeypatch.setenv('FFL_MM_NO_MALLOC_TUNING', '1')

    def call(name, *argv):
        import uuid

        from mmengine.logging import MMLogger

        distinct_second()
        # a current logger that prints to this test's captured stdout
        MMLogger.get_instance(f'ffl_mm_test_{uuid.uuid4().hex}')
        capsys.readouterr()
        result = tool_module(name).main([str(a) for a in argv])
        out = capsys.readouterr()
        return result, out.out + out.err

    return call


@pytest.fixture
def mmpretrain_main(capsys):
    """Run MMPretrain's ``tools/<name>.py`` main() with ``argv``; return
    what it printed."""
    from mmengine.logging import MMLogger

    from ffl_mm.tools_support.mmpretrain_tools import mmpretrain_tool, tool_argv

    def call(name, argv):
        distinct_second()
        import uuid
        MMLogger.get_instance(f'ffl_mm_test_{uuid.uuid4().hex}')
        capsys.readouterr()
        with tool_argv(f'{name}.py', [str(a) for a in argv]):
            mmpretrain_tool(name).main()
        out = capsys.readouterr()
        return out.out + out.err

    return call


@pytest.fixture(autouse=True)
def _restore_global_instances():
    """Each test starts with MMEngine's global instances as the previous
    one found them: a Runner, ``init_default_scope`` or
    ``MessageHub.get_instance`` in one test would otherwise change the
    current registry scope, or the current message hub (whose ``epoch``
    drives the KD ramp-up), for the rest of the process."""
    from mmengine.logging import MessageHub
    from mmengine.registry import DefaultScope
    saved = {cls: cls._instance_dict.copy()
             for cls in (DefaultScope, MessageHub)}
    yield
    for cls, instances in saved.items():
        cls._instance_dict.clear()
        cls._instance_dict.update(instances)


@pytest.fixture
def repo():
    return REPO


# Shared builders of the unit tests.
# the copies that change a layout on purpose
_LAYOUT_CHANGES = ('aten.copy_', 'aten.clone', 'aten._to_copy')


def _layout_of(t):
    """The order of a map's dimensions in memory (``'NCHW'``,
    ``'NHWC'``: channels-last, or another), or None where it does not
    matter (not 4-D, one channel or one location, or broadcast). A
    channel slice keeps its tensor's order."""
    if t.dim() != 4 or t.shape[1] == 1 or t.shape[2] * t.shape[3] == 1 \
            or 0 in t.stride():
        return None
    order = sorted(range(4), key=lambda d: (-t.stride(d), d))
    return ''.join('NCHW'[d] for d in order)


def mixed_layout_ops(fn):
    """The ops that ``fn()`` runs (forward and backward alike) on two
    tensors of one 4-D shape whose dimensions lie in memory in different
    orders (``NCHW`` and channels-last ``NHWC``), as ``(op, shape,
    orders)``. Such a pass cannot run along both tensors' memory at once
    (a slow path on the CPU); the deliberate layout copies (``copy_``,
    ``clone``, ``_to_copy``) are left out."""
    from torch.utils._python_dispatch import TorchDispatchMode

    found = []

    class Recorder(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = str(func.overloadpacket)
            if not name.startswith(_LAYOUT_CHANGES):
                tensors = []
                for arg in list(args) + list(kwargs.values()):
                    items = arg if isinstance(arg, (list, tuple)) else [arg]
                    tensors += [a for a in items
                                if isinstance(a, torch.Tensor)]
                layouts = {}
                for t in tensors:
                    layout = _layout_of(t)
                    if layout is not None:
                        layouts.setdefault(tuple(t.shape), set()).add(layout)
                found.extend((name, shape, tuple(sorted(kinds)))
                             for shape, kinds in layouts.items()
                             if len(kinds) > 1)
            return func(*args, **kwargs)

    with Recorder():
        fn()
    return found


def count_params(module):
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def ffl_cfg(depth=20, num_classes=10, num_branches=2, shared_stages=2,
            **kwargs):
    """A small FFL model config on CIFAR ResNets (in_channels given)."""
    cfg = dict(
        type='FFLClassifier',
        num_branches=num_branches,
        shared_stages=shared_stages,
        backbone=dict(type='CIFARResNet', depth=depth),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=64),
        fusion_neck=dict(
            type='FFLFusionNeck', in_channels=64,
            num_branches=num_branches, out_channels=64),
        fusion_head=dict(type='LinearClsHead', num_classes=num_classes,
                         in_channels=64),
        distill_loss=dict(type='MutualKDLoss', rampup=80))
    cfg.update(kwargs)
    return cfg


def make_batch(n=4, num_classes=10, size=32):
    """``(inputs, data_samples)``: random images, labels 0, 1, ..."""
    torch.manual_seed(0)
    x = torch.randn(n, 3, size, size)
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(n)]
    return x, samples


def heterogeneous_cfg(**kwargs):
    """Independent CIFAR ResNet-20 (64 channels) + WRN-10-2 (128)."""
    return ffl_cfg(
        shared_stages=0,
        num_branches=None,
        backbone=[
            dict(type='CIFARResNet', depth=20),
            dict(type='WideResNet', depth=10, widen_factor=2)
        ],
        head=[
            dict(type='LinearClsHead', num_classes=10, in_channels=64),
            dict(type='LinearClsHead', num_classes=10, in_channels=128)
        ],
        fusion_neck=dict(type='FFLFusionNeck', in_channels=[64, 128],
                         out_channels=64),
        **kwargs)


def md5(path):
    """Hex MD5 of a file."""
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def write_cifar(root, base, num_classes, n_per_file=16, seed=0, **kwargs):
    """Write CIFAR-format pickles under ``root/<base.base_folder>`` and
    register a test-only subclass of ``base`` whose md5 table lists them.

    MMPretrain's parsing code and its md5 check both still run.
    """
    from ffl_mm.registry import DATASETS
    table = write_cifar_files(root, base, num_classes, n_per_file, seed,
                              **kwargs)
    name = f'Tiny{base.__name__}'
    subclass = type(name, (base, ), table)
    DATASETS.register_module(name=name, module=subclass, force=True)
    return name


# Stand-ins of the shipped configs' data sets, in their own formats, read by
# MMPretrain's own classes (the configs' types, scopes and pipelines kept).
def write_cifar_files(root, base, num_classes, n_per_file=4, seed=0,
                      row_values=3 * 32 * 32, extra_labels=0):
    """CIFAR-format pickles under ``root/<base.base_folder>`` with the
    official file names; returns the md5 table that ``base`` must hold for
    its own check to pass (``{'train_list', 'test_list', 'meta'}``).
    ``row_values`` and ``extra_labels`` make files that are not what they
    claim (grey 28x28 rows: 784; more labels than images)."""
    from mmpretrain.datasets import CIFAR10
    rng = np.random.default_rng(seed)
    folder = osp.join(root, base.base_folder)
    os.makedirs(folder, exist_ok=True)
    label_key = 'labels' if base is CIFAR10 else 'fine_labels'
    table = {}
    for name, _ in base.train_list + base.test_list:
        entry = {
            'data':
            rng.integers(0, 256, (n_per_file, row_values), dtype=np.uint8),
            label_key: rng.integers(0, num_classes,
                                    n_per_file + extra_labels).tolist(),
        }
        path = osp.join(folder, name)
        with open(path, 'wb') as f:
            pickle.dump(entry, f)
        table[name] = md5(path)
    meta_path = osp.join(folder, base.meta['filename'])
    with open(meta_path, 'wb') as f:
        pickle.dump({base.meta['key']: [f'c{i}' for i in range(num_classes)]},
                    f)
    return {
        'train_list': [[n, table[n]] for n, _ in base.train_list],
        'test_list': [[n, table[n]] for n, _ in base.test_list],
        'meta': {**base.meta, 'md5': md5(meta_path)},
    }


def write_imagenet(root, num_classes=1000, per_split=4, size=(40, 48),
                   seed=0):
    """An ImageNet-style folder (``train/``, ``val/`` of JPEGs) with its
    annotation lists (``meta/train.txt``, ``meta/val.txt``: ``path label``),
    as MMPretrain's ``ImageNet(split=...)`` reads it."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split in ('train', 'val'):
        os.makedirs(osp.join(root, split), exist_ok=True)
        lines = []
        for i in range(per_split):
            name = f'{split}_{i}.JPEG'
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(osp.join(root, split, name))
            lines.append(f'{name} {int(rng.integers(num_classes))}\n')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return root


@pytest.fixture(scope='session')
def standin_data(tmp_path_factory):
    """``{dataset type: data_root}`` for every data set family of the
    shipped configs; while it lives, MMPretrain's ``CIFAR10``/``CIFAR100``
    md5 tables list the stand-in files (their parsing and check still run).
    ``Digits`` ships with ffl_mm and needs no root."""
    from mmpretrain.datasets import CIFAR10, CIFAR100
    root = tmp_path_factory.mktemp('standin')
    roots = {'Digits': None}
    with pytest.MonkeyPatch.context() as patch:
        for base, classes in ((CIFAR10, 10), (CIFAR100, 100)):
            path = str(root / base.__name__.lower())
            for attr, value in write_cifar_files(path, base, classes).items():
                patch.setattr(base, attr, value)
            roots[base.__name__] = path
        roots['ImageNet'] = write_imagenet(str(root / 'imagenet'))
        yield roots


def point_at_standins(cfg, roots):
    """Point every data loader of ``cfg`` (and the TTA pipeline's) at the
    stand-in of its data set type; fails the test for a family without
    one."""
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader is None:
            continue
        dataset = loader.dataset
        if dataset.type not in roots:
            pytest.fail(f'{key}.dataset.type={dataset.type!r}: no stand-in '
                        'data for this family (add one to conftest.py)')
        if roots[dataset.type] is not None:
            dataset.data_root = roots[dataset.type]
    return cfg
