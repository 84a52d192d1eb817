# Copyright (c) ffl_mm contributors.
"""tools/train.py and tools/test.py end to end: a SIGKILLed run resumes to
the weights of an uninterrupted one, skips a damaged newest checkpoint, and
the result evaluates (docs/reliability.md)."""
import contextlib
import math
import os
import os.path as osp
import re
import signal

import pytest
import torch

from conftest import REPO, TINY_DIGITS, run_tool
from helpers.lab import lab

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

# 4 epochs of 2 iterations, no validation; the KD ramp and the LR change
# inside them
SCHEDULE = [
    *TINY_DIGITS,
    'train_dataloader.dataset.indices=32',
    'train_cfg.val_interval=100',
    'train_cfg.max_epochs=4',
    'model.distill_loss.rampup=4',
    'param_scheduler.milestones=[3]',
    'default_hooks.checkpoint.interval=1',
]


@contextlib.contextmanager
def one_thread():
    """As the subprocesses run (OMP_NUM_THREADS=1): the same kernels, so
    in-process and subprocess training agree to float rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _per_epoch(work_dir, key):
    results = lab('results')
    train, _ = results.split_records(results.load_records(work_dir))
    out = {}
    for record in train:
        out.setdefault(int(record['epoch']), []).append(record[key])
    return {e: v[-1] for e, v in out.items()}


def _assert_same_weights(a, b):
    a, b = (torch.load(p, map_location='cpu', weights_only=False)['state_dict']
            for p in (a, b))
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7,
                                   msg=key)


@pytest.mark.e2e
def test_killed_run_resumes_exactly_skips_a_damaged_checkpoint_and_tests(
        tmp_path, run_in_process):
    once = str(tmp_path / 'once')
    with one_thread():
        run_in_process('train.py', FFL, '--work-dir', once, '--cfg-options',
                       *SCHEDULE)

    # the same run in a process SIGKILLed right after epoch 2, then --resume
    (tmp_path / 'kill_hook.py').write_text(KILL_HOOK)
    config = tmp_path / 'ffl_kill.py'
    config.write_text(
        f"_base_ = ['{FFL}']\n"
        "custom_imports = dict(imports=['ffl_mm', 'ffl_mm.engine.compat', "
        "'kill_hook'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='EpochSeedHook'), "
        "dict(type='FiniteLossHook'), dict(type='SyncBuffersHook'), "
        "dict(type='KillAfterEpochHook', epoch=2)]\n")
    killed = str(tmp_path / 'killed')
    code, out = run_tool('train.py', str(config), '--work-dir', killed,
                         '--cfg-options', *SCHEDULE, check=False,
                         env=dict(PYTHONPATH=str(tmp_path)))
    assert code == -9, out[-2000:]  # SIGKILL, not a clean exit
    assert osp.isfile(osp.join(killed, 'epoch_2.pth'))
    assert not osp.exists(osp.join(killed, 'epoch_3.pth'))
    with one_thread():
        _, out = run_in_process('train.py', FFL, '--work-dir', killed,
                                '--resume', '--cfg-options', *SCHEDULE)
    assert 'resumed epoch: 2, iter: 4' in out
    # continues at the next iteration, not from scratch
    assert re.search(r'Epoch\(train\) \[3\]\[1/2\]', out)
    assert not re.search(r'Epoch\(train\) \[2\]\[', out)
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
    with one_thread():
        _, out = run_in_process('train.py', FFL, '--work-dir', killed,
                                '--resume', '--cfg-options', *SCHEDULE)
    assert re.search(r'--resume: skipping .*epoch_4\.pth: .*(truncated|'
                     r'damaged|not a complete)', out, re.S | re.I), out[-3000:]
    assert re.search(r'resuming from .*epoch_3\.pth', out)
    assert 'resumed epoch: 3, iter: 6' in out
    _assert_same_weights(osp.join(once, 'epoch_4.pth'), latest)
    ckpt = torch.load(latest, map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 8 and ckpt['meta']['epoch'] == 4

    # the result evaluates; --out keeps every prediction
    import mmengine
    preds = str(tmp_path / 'preds.pkl')
    metrics, out = run_in_process(
        'test.py', FFL, latest, '--work-dir', str(tmp_path / 'test'),
        '--out', preds, '--cfg-options', *TINY_DIGITS)
    assert re.search(r'Epoch\(test\).*accuracy/fused_top1: [\d.]+', out)
    assert metrics['accuracy/top1'] == metrics['accuracy/fused_top1']
    samples = mmengine.load(preds)
    assert len(samples) == 40
    assert {'pred_score', 'pred_label', 'gt_label', 'fused_score',
            'branch_scores'} <= set(samples[0])


class _Stopped(Exception):
    """Stands in for the process ending by a signal, in this process."""


def _term_hook_config(tmp_path, epoch, batch):
    """FFL digits, sending its own process SIGTERM after batch ``batch``
    (0-based) of epoch ``epoch`` (1-based)."""
    from mmengine.hooks import Hook

    from ffl_mm.registry import HOOKS

    @HOOKS.register_module(force=True)
    class TermInEpochHook(Hook):

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if runner.epoch + 1 == epoch and batch_idx == batch:
                os.kill(os.getpid(), signal.SIGTERM)

    config = tmp_path / 'ffl_term.py'
    config.write_text(
        f"_base_ = ['{FFL}']\n"
        "custom_hooks = [dict(type='EpochSeedHook'), "
        "dict(type='FiniteLossHook'), dict(type='DatasetCheckHook'), "
        "dict(type='ResumeCheckHook'), dict(type='TermInEpochHook')]\n")
    return config


@pytest.mark.e2e
def test_sigterm_saves_mid_epoch_and_resume_is_bit_identical(
        tmp_path, run_in_process, monkeypatch):
    """SIGTERM (SLURM pre-emption, scancel) in the middle of epoch 3 of a
    config that saves every 5 epochs: the run saves where it is, says so,
    ends by the signal; --resume continues at the next batch and ends with
    the weights of a run that was never stopped (ResumableEpochBasedTrainLoop:
    same batches, same augmentation draws)."""
    from ffl_mm.engine.hooks import safe_checkpoint_hook

    def stopped(signum, received):
        raise _Stopped(signum, received)

    monkeypatch.setattr(safe_checkpoint_hook, 'exit_by_signal', stopped)
    options = [*SCHEDULE, 'train_cfg.max_epochs=3',
               'default_hooks.checkpoint.interval=5']
    config = _term_hook_config(tmp_path, epoch=3, batch=0)
    whole, work = tmp_path / 'whole', tmp_path / 'work'
    run_in_process('train.py', FFL, '--work-dir', whole, '--cfg-options',
                   *options)
    with pytest.raises(_Stopped) as stop:
        run_in_process('train.py', config, '--work-dir', work,
                       '--cfg-options', *options)
    assert stop.value.args == (signal.SIGTERM, True)
    # 32 images in batches of 16: 2 iterations an epoch, 4 before epoch 3
    ckpt = work / 'epoch_3_iter_5.pth'
    assert sorted(p.name for p in work.glob('*.pth')) == [ckpt.name]
    assert (work / 'last_checkpoint').read_text() == str(ckpt)
    assert not list(work.glob('*.tmp'))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    _, out = run_in_process('train.py', config, '--work-dir', work,
                            '--resume', '--cfg-options', *options)
    assert 'Continuing epoch 3 after its first 1 batches' in out
    assert re.search(r'Epoch\(train\) \[3\]\[2/2\]', out)
    assert not re.search(r'Epoch\(train\) \[3\]\[1/2\]', out)
    final = torch.load(work / 'epoch_3.pth', weights_only=False)
    reference = torch.load(whole / 'epoch_3.pth', weights_only=False)
    assert final['meta']['iter'] == reference['meta']['iter'] == 6
    for key, value in reference['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), key
    # the signal's checkpoint went at the resumed run's next save; both
    # runs are one run
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_3.pth']
    first = torch.load(ckpt.with_name('epoch_3.pth'), weights_only=False)
    assert first['meta']['ffl_mm_run']['id'] != \
        reference['meta']['ffl_mm_run']['id']


@pytest.mark.e2e
@pytest.mark.parametrize('lr', ['1e3', '1e6'])
def test_a_diverging_run_keeps_the_last_good_checkpoint_to_resume(
        tmp_path, run_in_process, lr):
    """A good first epoch, then the learning rate jumps to ``lr`` with
    ``max_keep_ckpts=1``: no diverged checkpoint (finite weights of 1e9 and
    more that predict NaN, or a NaN loss) becomes the resume point; the
    last good one stays, ``last_checkpoint`` names it, and ``--resume``
    continues from it."""
    from ffl_mm.engine.hooks import NonFiniteWeightsError
    gamma = float(lr) / 0.05
    options = [*TINY_DIGITS, 'train_dataloader.dataset.indices=32',
               'train_cfg.val_interval=100', 'train_cfg.max_epochs=3',
               'default_hooks.checkpoint.interval=1',
               'default_hooks.checkpoint.max_keep_ckpts=1',
               'param_scheduler.milestones=[1]',
               f'param_scheduler.gamma={gamma}']
    work = tmp_path / 'work'
    with pytest.raises(NonFiniteWeightsError) as info:
        run_in_process('train.py', FFL, '--work-dir', work,
                       '--cfg-options', *options)
    good = str(work / 'epoch_1.pth')
    # the epoch-2 losses stayed finite: only the weights' predictions tell
    assert 'Not saving epoch_2.pth: the weights diverged' in str(info.value)
    assert f'The last good checkpoint, {good}, stays' in str(info.value)
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    assert (work / 'last_checkpoint').read_text() == good
    # the advice: the good weights with a sane learning rate
    _, out = run_in_process('train.py', FFL, '--work-dir', tmp_path / 'new',
                            '--cfg-options', *options[:-2],
                            f'load_from={good}', 'train_cfg.max_epochs=1')
    assert 'Load checkpoint from' in out
