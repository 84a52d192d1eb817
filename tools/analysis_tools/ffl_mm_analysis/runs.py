# Copyright (c) ffl_mm contributors.
"""Training runs of shipped configs through ``tools/train.py``, several at
a time with one thread each, for the studies on the digits data
(``ablation.py``, ``methods_table.py``).

A run that finished leaves ``<work_dir>/done``; it is not trained again,
so a study that stopped goes on where it stopped, and runs of one code
state can be shared between studies (copy the work dir).
"""
import os
import os.path as osp
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional, Sequence

TOOLS = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REPO = osp.dirname(TOOLS)


class Run(NamedTuple):
    """One training run: ``config`` (relative to the repository or
    absolute) with ``--cfg-options`` ``options`` and ``seed``, into
    ``work_dir`` (its log beside it, ``<work_dir>.log``)."""
    config: str
    options: Sequence[str]
    work_dir: str
    seed: int


def train(run: Run, python_path: Optional[str] = None) -> str:
    """Train ``run`` unless its ``done`` mark exists; returns its work
    dir. ``python_path``: a folder put first on ``PYTHONPATH`` (modules
    that a study's own config imports)."""
    if osp.exists(osp.join(run.work_dir, 'done')):
        return run.work_dir
    env = dict(os.environ, OMP_NUM_THREADS='1')
    if python_path:
        env['PYTHONPATH'] = python_path + os.pathsep + env.get(
            'PYTHONPATH', '')
    cmd = [sys.executable, osp.join(TOOLS, 'train.py'), run.config,
           '--work-dir', run.work_dir, '--cfg-options',
           f'randomness.seed={run.seed}', *run.options]
    with open(run.work_dir + '.log', 'w') as log:
        subprocess.run(cmd, cwd=REPO, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    open(osp.join(run.work_dir, 'done'), 'w').close()
    return run.work_dir


def train_all(runs: Sequence[Run], jobs: int = 2,
              python_path: Optional[str] = None) -> None:
    """Train every run, ``jobs`` at a time; the first failure is raised
    (its log names it) after the others ended."""
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(train, run, python_path) for run in runs]
        for future in futures:
            future.result()
