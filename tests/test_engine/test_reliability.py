# Copyright (c) ffl_mm contributors.
"""The reliability pieces on their own: the choice of checkpoint to resume
from, atomic writes, per-epoch seeding, the non-finite loss stop (the runs
that use them end to end: tests/test_tools/)."""
import os
import types
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.fileio import get_file_backend

from ffl_mm.engine import (AtomicLocalBackend, atomic_write,
                           find_resumable_checkpoint)
from ffl_mm.engine.hooks import (EpochSeedHook, FiniteLossHook,
                                 NonFiniteLossError, epoch_seed)


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


def test_temporaries_of_dead_writers_are_removed(tmp_path):
    """A SIGKILL during the flush leaves ``.epoch_N.pth.<pid>.tmp``; the
    next start removes it, not the file of a writer still alive."""
    import subprocess
    import sys

    from ffl_mm.engine import remove_stale_temporaries
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    stale = tmp_path / f'.epoch_3.pth.{dead.pid}.tmp'
    live = tmp_path / f'.epoch_4.pth.{os.getppid()}.tmp'
    mine = tmp_path / f'.epoch_5.pth.{os.getpid()}.tmp'
    for path in (stale, live, mine):
        path.write_bytes(b'partial')
    (tmp_path / 'epoch_2.pth').write_bytes(b'kept')
    assert remove_stale_temporaries(str(tmp_path)) == [str(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, mine.name, 'epoch_2.pth'])
    # in the run: SafeCheckpointHook removes them at the start, whatever
    # tool started it
    from ffl_mm.engine.hooks import SafeCheckpointHook
    stale.write_bytes(b'partial')
    hook = SafeCheckpointHook(interval=1)
    runner = types.SimpleNamespace(work_dir=str(tmp_path), cfg={},
                                   logger=None)
    hook.before_run(runner)
    hook.after_run(runner)
    assert not stale.exists() and live.exists() and mine.exists()


def test_a_failed_save_names_the_file(tmp_path, monkeypatch):
    import errno
    target = tmp_path / 'epoch_1.pth'
    target.write_bytes(b'old checkpoint')

    def full_disk(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', full_disk)
    with pytest.raises(OSError, match=r"No space left on device: could not "
                       r"write '.*epoch_1\.pth'") as info:
        atomic_write(b'new', target)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b'old checkpoint'
    assert os.listdir(tmp_path) == ['epoch_1.pth']
    monkeypatch.undo()
    # a directory where the file belongs (a `last_checkpoint` made by hand):
    # the message says what to do
    pointer = tmp_path / 'last_checkpoint'
    pointer.mkdir()
    with pytest.raises(OSError, match=r'it is a directory where a file '
                       r'belongs: move it away \(mv .*last_checkpoint '
                       r'.*last_checkpoint\.old\)'):
        atomic_write(b'epoch_1.pth', pointer)
    assert pointer.is_dir() and sorted(os.listdir(tmp_path)) == [
        'epoch_1.pth', 'last_checkpoint']


def test_configs_bound_how_long_ranks_wait_for_each_other(monkeypatch):
    """Every shipped config sets a distributed timeout of minutes, and the
    CPU (gloo) path passes it to the process group as MMEngine's
    ``init_dist`` does on CUDA."""
    import datetime
    import glob

    from mmengine.config import ConfigDict

    from conftest import REPO, shipped_config
    from ffl_mm.tools_support import distributed
    configs = [p for p in glob.glob(f'{REPO}/configs/*/*.py')
               if 'baselines/resnet34_imagenet' not in p]
    for path in configs:
        assert shipped_config(path).env_cfg.dist_cfg.timeout == 600, path
    calls = []
    monkeypatch.setattr(distributed.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(distributed.torch_dist, 'is_initialized',
                        lambda: False)
    monkeypatch.setattr(distributed.torch_dist, 'init_process_group',
                        lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(distributed.torch_dist, 'get_rank', lambda: 0)
    monkeypatch.setattr(distributed.torch_dist, 'get_world_size', lambda: 2)
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    cfg = ConfigDict(env_cfg=dict(dist_cfg=dict(backend='nccl',
                                                timeout=600)))
    distributed.setup_launcher(cfg, 'pytorch')
    assert calls == [dict(backend='gloo', rank=0, world_size=2,
                          timeout=datetime.timedelta(seconds=600))]
    # the config the Runner dumps says what runs
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


@pytest.mark.parametrize('hub, reason', [
    ('garbage', 'message_hub state is malformed'),
    (dict(log_scalars=dict(loss=3.0), runtime_info={}, resumed_keys={}),
     'not HistoryBuffer'),
    (dict(log_scalars={}), "must contain key: `runtime_info`"),
])
def test_resume_skips_a_checkpoint_with_a_malformed_message_hub(
        tmp_path, hub, reason):
    good = dict(meta=dict(epoch=1), state_dict={'w': torch.zeros(1)},
                message_hub=dict(log_scalars={}, runtime_info={},
                                 resumed_keys={}))
    torch.save(good, tmp_path / 'epoch_1.pth')
    torch.save(dict(good, message_hub=hub), tmp_path / 'epoch_2.pth')
    path, skipped = find_resumable_checkpoint(str(tmp_path))
    assert osp.basename(path) == 'epoch_1.pth'
    assert [osp.basename(p) for p, _ in skipped] == ['epoch_2.pth']
    assert reason in skipped[0][1]


def test_resume_does_not_follow_a_stale_pointer_past_a_newer_checkpoint(
        tmp_path):
    """``last_checkpoint`` could not be rewritten after epoch 3 was saved:
    the complete epoch 3 wins; a pointer to the newest file still comes
    first, and one to a file with another name too."""
    ckpt = dict(meta=dict(epoch=1), state_dict={'w': torch.zeros(1)})
    for n in (1, 2, 3):
        torch.save(ckpt, tmp_path / f'epoch_{n}.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    path, _ = find_resumable_checkpoint(str(tmp_path))
    assert osp.basename(path) == 'epoch_3.pth'
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    assert osp.basename(find_resumable_checkpoint(str(tmp_path))[0]) == \
        'epoch_3.pth'
    torch.save(ckpt, tmp_path / 'latest.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'latest.pth'))
    assert osp.basename(find_resumable_checkpoint(str(tmp_path))[0]) == \
        'latest.pth'


def test_diverged_weights_are_never_saved(tmp_path):
    """The loss of an epoch's last step is checked before that step: its
    result can still be NaN. The hook refuses to save it and names the
    tensors; the pointer still names the last good checkpoint."""
    import types

    import torch.nn as nn

    from ffl_mm.engine.hooks import NonFiniteWeightsError, SafeCheckpointHook
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    saved = []
    runner = types.SimpleNamespace(
        model=model, work_dir=str(tmp_path),
        save_checkpoint=lambda *args, **kwargs: saved.append(args),
        message_hub=types.SimpleNamespace(update_info=lambda *a: None))
    from mmengine.fileio import get_file_backend
    hook = SafeCheckpointHook(interval=1)
    hook.out_dir = str(tmp_path)
    hook.file_backend = get_file_backend(str(tmp_path))
    hook._save_checkpoint_with_step(runner, 1, dict(epoch=1))
    assert len(saved) == 1
    with torch.no_grad():
        model[0].weight[0, 0] = float('nan')
        model[1].running_var[1] = float('inf')
    with pytest.raises(NonFiniteWeightsError,
                       match=r'Not saving epoch_2.pth: 2 weight tensor\(s\) '
                       r'hold NaN or inf .*0\.weight, 1\.running_var'):
        hook._save_checkpoint_with_step(runner, 2, dict(epoch=2))
    assert len(saved) == 1
    assert (tmp_path / 'last_checkpoint').read_text().endswith('epoch_1.pth')
