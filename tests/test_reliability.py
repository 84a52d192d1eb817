# Copyright (c) ffl_mm contributors.
"""Interrupted runs resume exactly, damaged checkpoints lose nothing, bad
input gets clear errors, distributed ranks stay consistent."""
import math
import os
import os.path as osp
import pickle
import random
import re
import sys

import numpy as np
import pytest
import torch
from mmengine.fileio import get_file_backend

from conftest import REPO, TINY_DIGITS, run_cmd, run_tool
import ffl_mm.engine.compat  # noqa: F401 (the atomic backend under test)
from ffl_mm.analysis import results
from ffl_mm.engine import (AtomicLocalBackend, atomic_write,
                           find_resumable_checkpoint)
from ffl_mm.engine.hooks import (EpochSeedHook, FiniteLossHook,
                                 NonFiniteLossError, epoch_seed)

FFL = f'{REPO}/configs/ffl/ffl_resnet32x2_digits.py'

# a hook that SIGKILLs its own process right after epoch N's checkpoint
KILL_HOOK = '''
import os
import signal

from mmengine.hooks import Hook
from ffl_mm.registry import HOOKS


@HOOKS.register_module()
class KillAfterEpochHook(Hook):
    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
'''

# every rank saves its own weights at the end of the run
RANK_WEIGHTS_HOOK = '''
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from ffl_mm.registry import HOOKS


@HOOKS.register_module()
class SaveRankWeightsHook(Hook):

    def after_run(self, runner):
        model = runner.model
        model = getattr(model, 'module', model)
        torch.save(model.state_dict(),
                   f'{runner.work_dir}/rank{get_rank()}_weights.pth')
'''

# 4 epochs of 4 iterations; the KD ramp and the LR change inside them
SCHEDULE = [
    *TINY_DIGITS,
    'train_cfg.max_epochs=4',
    'model.distill_loss.rampup=4',
    'param_scheduler.milestones=[3]',
    'default_hooks.checkpoint.interval=1',
]


def _config_with_hook(tmp_path, module, hook):
    """A config = FFL digits + a test hook loaded from ``tmp_path``."""
    (tmp_path / f'{module}.py').write_text(
        KILL_HOOK if module == 'kill_hook' else RANK_WEIGHTS_HOOK)
    path = tmp_path / f'ffl_{module}.py'
    path.write_text(
        f"_base_ = ['{FFL}']\n"
        "custom_imports = dict(imports=['ffl_mm', "
        f"'{module}'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='EpochSeedHook'), "
        "dict(type='FiniteLossHook'), dict(type='SyncBuffersHook'), "
        f"{hook}]\n")
    return str(path)


def _per_epoch(work_dir, key):
    train, _ = results.split_records(results.load_records(work_dir))
    out = {}
    for record in train:
        out.setdefault(int(record['epoch']), []).append(record[key])
    return {e: v[-1] for e, v in out.items()}


def _weights(path):
    return torch.load(path, map_location='cpu',
                      weights_only=False)['state_dict']


def _assert_same_weights(a, b):
    a, b = _weights(a), _weights(b)
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7,
                                   msg=key)


def test_killed_run_resumes_exactly_and_skips_a_damaged_checkpoint(
        tmp_path):
    once = str(tmp_path / 'once')
    run_tool('train.py', FFL, '--work-dir', once, '--cfg-options', *SCHEDULE)

    # the same run, SIGKILLed right after epoch 2, then --resume
    killed = str(tmp_path / 'killed')
    config = _config_with_hook(tmp_path, 'kill_hook',
                               "dict(type='KillAfterEpochHook', epoch=2)")
    code, out = run_tool('train.py', config, '--work-dir', killed,
                         '--cfg-options', *SCHEDULE, check=False,
                         env=dict(PYTHONPATH=str(tmp_path)))
    assert code == -9, out[-2000:]  # SIGKILL, not a clean exit
    assert osp.isfile(osp.join(killed, 'epoch_2.pth'))
    assert not osp.exists(osp.join(killed, 'epoch_3.pth'))
    _, out = run_tool('train.py', FFL, '--work-dir', killed, '--resume',
                      '--cfg-options', *SCHEDULE)
    assert 'resumed epoch: 2, iter: 8' in out
    _assert_same_weights(osp.join(once, 'epoch_4.pth'),
                         osp.join(killed, 'epoch_4.pth'))
    # the KD ramp-up weight and the LR follow the resumed epoch
    for key in ('kd_weight', 'lr'):
        assert _per_epoch(killed, key) == pytest.approx(
            _per_epoch(once, key), rel=1e-6), key
    kd = _per_epoch(once, 'kd_weight')
    # w(e) = exp(-5 (1 - e/4)^2) for the 0-based epoch e = logged epoch - 1
    assert [kd[e] for e in (1, 2, 3, 4)] == pytest.approx(
        [math.exp(-5 * (1 - e / 4)**2) for e in range(4)], rel=1e-5)
    lr = _per_epoch(once, 'lr')
    # milestone 3: epochs 1-3 at the base LR, epoch 4 at a tenth
    assert lr[1] == lr[3] and lr[4] == pytest.approx(lr[3] * 0.1)

    # the newest checkpoint damaged (a death while writing it): --resume
    # says so, continues from epoch 3 and still ends on the same weights
    latest = osp.join(killed, 'epoch_4.pth')
    with open(latest, 'rb') as f:
        data = f.read()
    with open(latest, 'wb') as f:
        f.write(data[:len(data) // 3])
    _, out = run_tool('train.py', FFL, '--work-dir', killed, '--resume',
                      '--cfg-options', *SCHEDULE)
    assert re.search(r'--resume: skipping .*epoch_4\.pth: .*(truncated|'
                     r'damaged|not a complete)', out, re.S | re.I), out[-3000:]
    assert re.search(r'resuming from .*epoch_3\.pth', out)
    assert 'resumed epoch: 3, iter: 12' in out
    _assert_same_weights(osp.join(once, 'epoch_4.pth'), latest)


def test_resume_with_only_damaged_checkpoints_is_a_clear_error(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'PK\x03\x04 not really a zip')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    code, out = run_tool('train.py', FFL, '--work-dir', str(work),
                         '--resume', '--cfg-options', *TINY_DIGITS,
                         check=False)
    assert code != 0
    assert 'skipping' in out and 'epoch_2.pth: file does not exist' in out
    assert 'no readable checkpoint' in out
    assert (work / 'epoch_1.pth').read_bytes().startswith(b'PK')  # kept


def test_find_resumable_checkpoint_order(tmp_path):
    good = {'meta': {'epoch': 1}, 'state_dict': {'w': torch.zeros(1)}}
    for n in (1, 2, 10):
        torch.save(good, tmp_path / f'epoch_{n}.pth')
    (tmp_path / 'epoch_11.pth').write_bytes(b'garbage')
    path, skipped = find_resumable_checkpoint(str(tmp_path))
    assert osp.basename(path) == 'epoch_10.pth'  # 10 after 11, not 2
    assert [osp.basename(p) for p, _ in skipped] == ['epoch_11.pth']
    assert find_resumable_checkpoint(str(tmp_path / 'none')) == (None, [])


def test_atomic_checkpoint_writes(tmp_path, monkeypatch):
    assert isinstance(get_file_backend(str(tmp_path / 'x.pth')),
                      AtomicLocalBackend)
    target = tmp_path / 'epoch_1.pth'
    atomic_write(b'old checkpoint', target)

    class Boom(Exception):
        pass

    real_fsync = os.fsync

    def dying_fsync(fd):  # the process dies after a partial write
        raise Boom()

    monkeypatch.setattr(os, 'fsync', dying_fsync)
    with pytest.raises(Boom):
        atomic_write(b'new checkpoint that never completes', target)
    monkeypatch.setattr(os, 'fsync', real_fsync)
    assert target.read_bytes() == b'old checkpoint'
    assert os.listdir(tmp_path) == ['epoch_1.pth']  # no temporary left
    get_file_backend(str(target)).put_text('epoch_2.pth', tmp_path / 'p')
    assert (tmp_path / 'p').read_text() == 'epoch_2.pth'


def test_epoch_seed_hook_makes_epochs_independent_of_history():

    class Runner:
        seed = 7
        epoch = 3

    def draws():
        return (random.random(), float(np.random.rand()),
                float(torch.rand(1)))

    hook = EpochSeedHook()
    hook.before_train_epoch(Runner)
    first = draws()
    draws()  # whatever else happens (validation, a restart) ...
    hook.before_train_epoch(Runner)
    assert draws() == first  # ... epoch 3 draws the same numbers
    Runner.epoch = 4
    hook.before_train_epoch(Runner)
    assert draws() != first
    assert epoch_seed(7, 3) != epoch_seed(7, 4) != epoch_seed(8, 3)
    assert 0 <= epoch_seed(2**40, 10**6) < 2**32


def test_finite_loss_hook_names_the_term_and_iteration():

    class Runner:
        epoch = 2
        iter = 41

    hook = FiniteLossHook()
    good = {'loss': torch.tensor(1.0), 'loss_ce_fused': torch.tensor(0.5),
            'kd_weight': torch.tensor(float('nan'))}  # not a loss: ignored
    hook.after_train_iter(Runner, 3, outputs=good)
    bad = dict(good, loss_kd_branch1=torch.tensor(float('inf')),
               loss=torch.tensor(float('inf')))
    with pytest.raises(NonFiniteLossError,
                       match=r'epoch 3, iteration 42 \(batch 3 of the '
                       r'epoch\): loss=inf, loss_kd_branch1=inf'):
        hook.after_train_iter(Runner, 3, outputs=bad)
    with pytest.raises(ValueError, match='interval must be an int >= 1'):
        FiniteLossHook(interval=0)


def test_nan_loss_stops_training_by_default(tmp_path):
    code, out = run_tool(
        'train.py', FFL, '--work-dir', str(tmp_path), '--cfg-options',
        *TINY_DIGITS, 'model.fusion_head.loss.loss_weight=nan', check=False)
    assert code != 0
    assert re.search(r'NonFiniteLossError: Non-finite loss at epoch 1, '
                     r'iteration 1 .*loss_ce_fused=nan', out)
    assert not osp.exists(tmp_path / 'epoch_1.pth')


def test_missing_dataset_path_is_a_clear_error(tmp_path):
    code, out = run_tool(
        'train.py', f'{REPO}/configs/ffl/ffl_resnet32x2_cifar100.py',
        '--work-dir', str(tmp_path), '--cfg-options',
        f'train_dataloader.dataset.data_root={tmp_path}/no_cifar',
        check=False)
    assert code != 0
    assert re.search(r"train_dataloader.dataset.data_root='.*no_cifar' does "
                     r'not exist.*download=True', out)


def test_load_from_another_architecture_is_reported(tmp_path):
    from ffl_mm.registry import MODELS
    other = MODELS.build(dict(type='ResNet_CIFAR', depth=18,
                              base_channels=8))
    path = str(tmp_path / 'other.pth')
    torch.save({'state_dict': other.state_dict()}, path)
    _, out = run_tool('train.py', FFL, '--work-dir', str(tmp_path / 'w'),
                      '--cfg-options', *TINY_DIGITS,
                      'train_cfg.max_epochs=1', f'load_from={path}')
    assert 'missing keys in source state_dict' in out
    assert 'unexpected key in source state_dict' in out


def test_crafted_checkpoint_is_refused_by_export(tmp_path):
    marker = tmp_path / 'pwned'

    class Evil:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': Evil()}, path)
    code, out = run_tool('export.py', FFL, str(path), '--branch', '0',
                         '--out', str(tmp_path / 'out'), check=False)
    assert code != 0
    assert 'UnsafeCheckpointError' in out
    assert re.search(r'(os|posix)\.system', out)
    assert not marker.exists()


def test_two_cpu_ranks_stay_consistent(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('the gloo path is for machines without CUDA')
    work = tmp_path / 'work'
    config = _config_with_hook(tmp_path, 'rank_hook',
                               "dict(type='SaveRankWeightsHook')")
    env = dict(PYTHON=sys.executable, PYTHONPATH=str(tmp_path),
               PORT=str(random.randint(20000, 40000)))
    run_cmd(['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
             str(work), '--cfg-options', *TINY_DIGITS,
             'train_cfg.max_epochs=2', 'default_hooks.checkpoint.interval=1'],
            env=env)
    # parameters by DDP's gradient all-reduce, BN statistics by
    # SyncBuffersHook at every epoch end (DDP alone leaves each rank's last
    # forward statistics)
    ranks = [torch.load(work / f'rank{r}_weights.pth') for r in (0, 1)]
    assert set(ranks[0]) == set(ranks[1])
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0,
                                   atol=0, msg=key)
    # one set of checkpoints and one log, from rank 0
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == [
        'epoch_1.pth', 'epoch_2.pth', 'rank0_weights.pth',
        'rank1_weights.pth'
    ]
    logs = [f for _, _, files in os.walk(work) for f in files
            if f.endswith('.log')]
    assert len(logs) == 1

    # 41 test images on 2 ranks: every one evaluated once, none twice
    preds = tmp_path / 'preds.pkl'
    options = [o for o in TINY_DIGITS if not o.startswith('test_')]
    run_cmd(['bash', 'tools/dist_test.sh', FFL, str(work / 'epoch_2.pth'),
             '2', '--work-dir', str(tmp_path / 'test'), '--out', str(preds),
             '--cfg-options', *options, 'test_dataloader.dataset.indices=41',
             'test_dataloader.batch_size=8'], env=env)
    with open(preds, 'rb') as f:
        samples = pickle.load(f)
    assert len(samples) == 41
    assert sorted(s['sample_idx'] for s in samples) == list(range(41))
