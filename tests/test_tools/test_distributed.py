# Copyright (c) ffl_mm contributors.
"""tools/dist_train.sh and dist_test.sh with two processes on the CPU
(gloo): one set of checkpoints and one log, identical weights on both
ranks, every test image evaluated exactly once. The training run is
MFEF's, so DDP runs with the memory switch on (its default: the chains
recomputed in backward by PyTorch's checkpoint)."""
import os
import pickle
import re
import sys

import pytest
import torch

from conftest import REPO, TINY_DIGITS, free_port, run_cmd

MFEF = f'{REPO}/configs/mfef/mfef_resnet32x2_digits.py'

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
        chains = getattr(model, 'fusion_pre_necks', None)
        if chains is not None:
            with open(f'{runner.work_dir}/rank{get_rank()}_with_cp', 'w') as f:
                f.write(repr(chains.with_cp))


@HOOKS.register_module()
class TermRankHook(Hook):
    """SIGTERM to one rank's own process after a batch of an epoch."""

    def __init__(self, epoch, batch, rank):
        self.epoch, self.batch, self.rank = epoch, batch, rank

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if (runner.epoch + 1, batch_idx, get_rank()) == (
                self.epoch, self.batch, self.rank):
            import os, signal
            os.kill(os.getpid(), signal.SIGTERM)
'''


def test_dist_scripts_usage():
    code, out = run_cmd(['bash', 'tools/dist_train.sh'], check=False)
    assert code == 2 and 'usage' in out
    code, out = run_cmd(['bash', 'tools/dist_test.sh', 'a.py'], check=False)
    assert code == 2 and 'usage' in out


@pytest.mark.e2e
@pytest.mark.slow  # make test-slow (.ci/run): the longest run of the suite
def test_two_cpu_ranks_train_and_test_consistently(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('the gloo path is for machines without CUDA')
    (tmp_path / 'rank_hook.py').write_text(RANK_WEIGHTS_HOOK)
    config = tmp_path / 'ffl_ranks.py'
    config.write_text(
        f"_base_ = ['{MFEF}']\n"
        "custom_imports = dict(imports=['ffl_mm', 'ffl_mm.engine.compat', "
        "'rank_hook'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='EpochSeedHook'), "
        "dict(type='FiniteLossHook'), dict(type='SyncBuffersHook'), "
        "dict(type='SaveRankWeightsHook')]\n")
    work = tmp_path / 'work'
    env = dict(PYTHON=sys.executable, PYTHONPATH=str(tmp_path),
               PORT=free_port())
    schedule = [*TINY_DIGITS, 'train_cfg.max_epochs=3',
                'train_cfg.val_interval=100']
    _, out = run_cmd([
        'bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
        str(work), '--cfg-options', *schedule,
        'default_hooks.checkpoint.interval=1'
    ], env=env)
    assert 'initialised the gloo process group (rank 0/2)' in out
    # 64 images over 2 ranks of batch 16: 2 iterations an epoch
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', out)
    assert out.count('Saving checkpoint at 1 epochs') == 1
    # parameters by DDP's gradient all-reduce, BN statistics by
    # SyncBuffersHook at every epoch end (DDP alone leaves each rank's last
    # forward statistics)
    ranks = [torch.load(work / f'rank{r}_weights.pth') for r in (0, 1)]
    for r in (0, 1):  # the memory switch was on
        assert (work / f'rank{r}_with_cp').read_text() == 'True'
    assert set(ranks[0]) == set(ranks[1])
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0,
                                   atol=0, msg=key)
    # one set of checkpoints and one log, from rank 0
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == [
        'epoch_2.pth', 'epoch_3.pth', 'rank0_weights.pth',
        'rank1_weights.pth'
    ]
    logs = [f for _, _, files in os.walk(work) for f in files
            if f.endswith('.log')]
    assert len(logs) == 1
    ckpt = torch.load(work / 'epoch_2.pth', map_location='cpu',
                      weights_only=False)
    assert ckpt['meta']['iter'] == 4
    # keys without DDP's "module." prefix: loadable by a single process
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])

    # SIGTERM to rank 1 only, after the first of epoch 3's 2 batches:
    # every rank stops there, rank 0 saves (each rank's random state and
    # BN statistics with it), rank 1 ends by the signal; --resume
    # continues at batch 2 and ends with the uninterrupted run's weights
    config.write_text(config.read_text().replace(
        "dict(type='SaveRankWeightsHook')",
        "dict(type='TermRankHook', epoch=3, batch=0, rank=1)"))
    stopped = tmp_path / 'stopped'
    code, out = run_cmd([
        'bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
        str(stopped), '--cfg-options', *schedule,
        'default_hooks.checkpoint.interval=5'
    ], env=dict(env, PORT=free_port()), check=False)
    assert code != 0
    assert 'SIGTERM received: stopping in epoch 3 after batch 1 of 2' in out
    assert re.search(r'exitcode\s*:\s*-15', out), out[-3000:]
    assert 'Signal 15 (SIGTERM)' in out
    assert sorted(p.name for p in stopped.glob('*.pth')) == [
        'epoch_3_iter_5.pth']
    _, out = run_cmd([
        'bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
        str(stopped), '--resume', '--cfg-options', *schedule,
        'default_hooks.checkpoint.interval=5'
    ], env=dict(env, PORT=free_port()))
    assert 'Continuing epoch 3 after its first 1 batches' in out
    final = torch.load(stopped / 'epoch_3.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    whole = torch.load(work / 'epoch_3.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    for key, value in whole.items():
        assert torch.equal(final[key], value), key

    # 41 test images on 2 ranks: every one evaluated once, none twice
    preds = tmp_path / 'preds.pkl'
    options = [o for o in TINY_DIGITS if not o.startswith('test_')]
    _, out = run_cmd([
        'bash', 'tools/dist_test.sh', MFEF, str(work / 'epoch_2.pth'), '2',
        '--work-dir', str(tmp_path / 'test'), '--out', str(preds),
        '--cfg-options', *options, 'test_dataloader.dataset.indices=41',
        'test_dataloader.batch_size=8'
    ], env=dict(env, PORT=free_port()))
    assert re.search(r'Epoch\(test\) \[3/3\].*accuracy/top1: [\d.]+', out)
    with open(preds, 'rb') as f:
        samples = pickle.load(f)
    assert len(samples) == 41
    assert sorted(s['sample_idx'] for s in samples) == list(range(41))


FROZEN_RANK = '''
import sys, time
import torch.distributed as dist
from mmengine.config import ConfigDict
from ffl_mm.tools_support.distributed import setup_launcher
cfg = ConfigDict(env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=1)))
setup_launcher(cfg, 'pytorch')
if dist.get_rank() == 1:
    time.sleep(120)  # a frozen rank
dist.barrier()
print('never here', flush=True)
'''


@pytest.mark.e2e
def test_a_frozen_rank_ends_the_run_after_the_configured_timeout(tmp_path):
    """``env_cfg.dist_cfg.timeout`` (600 s in ffl_mm's configs, 1 s here)
    bounds how long the other ranks wait: the run ends with an error
    instead of hanging for torch's default 30 minutes."""
    import time
    if torch.cuda.is_available():
        pytest.skip('the gloo path is for machines without CUDA')
    script = tmp_path / 'frozen.py'
    script.write_text(FROZEN_RANK)
    start = time.time()
    code, out = run_cmd([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        '2', '--master_port', free_port(), str(script)
    ], check=False, timeout=120)
    assert code != 0 and 'never here' not in out
    assert re.search(r'[Tt]imed? ?out', out), out[-3000:]
    assert time.time() - start < 60
