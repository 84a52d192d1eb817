# Copyright (c) ffl_mm contributors.
"""tools/slurm_*.sh pass MMPretrain's interface to srun (a stub that
records its arguments)."""
import os
import os.path as osp
import stat
import subprocess

import pytest

from conftest import REPO

TOOLS = osp.join(REPO, 'tools')


@pytest.fixture
def srun(tmp_path):
    """A stub srun on PATH: its argv, one per line, and PYTHONPATH."""
    record = tmp_path / 'srun.txt'
    stub = tmp_path / 'bin' / 'srun'
    stub.parent.mkdir()
    stub.write_text('#!/usr/bin/env bash\n'
                    f'printf "%s\\n" "$@" > {record}\n'
                    f'echo "PYTHONPATH=$PYTHONPATH" >> {record}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f'{stub.parent}:{os.environ["PATH"]}')
    return record, env


def _run(script, args, env):
    return subprocess.run(['bash', osp.join(TOOLS, script), *args],
                          env=env, capture_output=True, text=True)


def test_slurm_train_arguments(srun):
    record, env = srun
    env.update(GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='3',
               SRUN_ARGS='--quotatype=auto --time=1:00:00',
               PYTHON='python3')
    proc = _run('slurm_train.sh', ['part', 'ffl', 'configs/ffl/x.py',
                                   'work_dirs/x', '--resume',
                                   '--cfg-options', 'a=1'], env)
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines() == [
        '-p', 'part', '--job-name=ffl', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=3', '--kill-on-bad-exit=1',
        '--quotatype=auto', '--time=1:00:00', 'python3', '-u',
        osp.join(TOOLS, 'train.py'), 'configs/ffl/x.py',
        '--work-dir=work_dirs/x', '--launcher=slurm', '--resume',
        '--cfg-options', 'a=1', f'PYTHONPATH={TOOLS}/..' +
        (f':{os.environ["PYTHONPATH"]}' if os.environ.get('PYTHONPATH')
         else '')
    ]


def test_slurm_test_arguments_and_defaults(srun):
    record, env = srun
    for key in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS'):
        env.pop(key, None)
    env['PYTHON'] = 'python'
    proc = _run('slurm_test.sh', ['p', 'j', 'c.py', 'ck.pth', '--tta'], env)
    assert proc.returncode == 0, proc.stderr
    args = record.read_text().splitlines()
    assert args[:8] == [
        '-p', 'p', '--job-name=j', '--gres=gpu:8', '--ntasks=8',
        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1'
    ]
    assert args[8:14] == ['python', '-u', osp.join(TOOLS, 'test.py'),
                          'c.py', 'ck.pth', '--launcher=slurm']
    assert args[14] == '--tta'


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_usage(script, srun):
    proc = _run(script, ['only', 'three', 'args'], srun[1])
    assert proc.returncode == 2 and 'usage:' in proc.stderr
