# Copyright (c) ffl_mm contributors.
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

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


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Each test starts in the registry scope the previous one found: a
    Runner or ``init_default_scope`` in one test changes MMEngine's current
    scope for the rest of the process."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture
def repo():
    return REPO
