# Copyright (c) ffl_mm contributors.
"""tools/analysis_tools/methods_table.py: the table of every method from
finished runs (their logs written here; the runs marked done are not
trained again)."""
import json
import os.path as osp

import pytest

from conftest import REPO, tool_module
from helpers.lab import lab

methods_table = tool_module('analysis_tools/methods_table.py')


def _finished_run(root, name, finals, config=None):
    """A work dir whose last validation gives ``finals`` (output ->
    top-1), marked done, with a copy of ``config``."""
    from mmengine.config import Config
    run = root / name
    vis = run / '20261206_000000' / 'vis_data'
    vis.mkdir(parents=True)
    record = {f'accuracy/{k}_top1' if k != 'top1' else 'accuracy/top1': v
              for k, v in finals.items()}
    with open(vis / 'scalars.json', 'w') as f:
        f.write(json.dumps(dict(record, step=15)) + '\n')
    (run / 'done').touch()
    if config:
        Config.fromfile(osp.join(REPO, config)).dump(
            str(run / osp.basename(config)))


def test_table_from_finished_runs(tmp_path):
    ffl = [dict(top1=99.0, fused=99.0, ensemble=98.0, branch0=97.0,
                branch1=96.0),
           dict(top1=98.0, fused=98.0, ensemble=98.0, branch0=95.0,
                branch1=94.0)]
    # seed 0's ensemble ties with the leader: the leader is still named
    okddip = [dict(top1=97.0, ensemble=97.0, branch0=96.0, branch1=96.0,
                   branch2=95.0, branch3=97.0),
              dict(top1=95.0, ensemble=99.0, branch0=92.0, branch1=93.0,
                   branch2=94.0, branch3=95.0)]
    for seed in (0, 1):
        _finished_run(tmp_path, f'ffl_seed{seed}', ffl[seed],
                      'configs/ffl/ffl_resnet32x2_digits.py')
        _finished_run(tmp_path, f'okddip_seed{seed}', okddip[seed],
                      'configs/okddip/okddip_resnet32x4_digits.py')
        _finished_run(tmp_path, f'single_seed{seed}', dict(top1=90.0 + seed))
    numbers = methods_table.main(['--seeds', '0', '1', '--methods', 'ffl',
                                  'okddip', '--work-dir', str(tmp_path)])
    assert numbers['FFL']['predicts'] == 'fused'
    assert numbers['FFL']['prediction'] == [99.0, 98.0]
    assert numbers['FFL']['branches'] == [96.5, 94.5]
    assert numbers['OKDDip']['predicts'] == 'branch3 (leader)'
    assert numbers['OKDDip']['branches'] == [96.0, 93.5]
    assert numbers['single ResNet-32']['prediction'] == [90.0, 91.0]
    table = (tmp_path / 'results.md').read_text().splitlines()
    assert table[2] == ('| FFL | fused | 98.50 ± 0.71 | 98.00 ± 0.00 | '
                        '95.50 ± 1.41 | 99.00, 98.00 |')
    assert table[3].startswith('| OKDDip | branch3 (leader) | 96.00 ± 1.41 |')
    assert table[4] == ('| single ResNet-32 | the network | 90.50 ± 0.71 '
                        '|  |  | 90.00, 91.00 |')
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['top1']['FFL']['ensemble'] == [98.0, 98.0]


def test_unfinished_run_is_trained(tmp_path, monkeypatch):
    """A run without its done mark goes to tools/train.py (here a stand-in
    that records the command)."""
    runs = lab('runs')
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        work = cmd[cmd.index('--work-dir') + 1]
        _finished_run(tmp_path, osp.basename(work),
                      dict(top1=50.0, ensemble=50.0, branch0=40.0,
                           branch1=41.0))

    monkeypatch.setattr(runs.subprocess, 'run', fake_run)
    _finished_run(tmp_path, 'single_seed3', dict(top1=90.0))
    numbers = methods_table.main(['--seeds', '3', '--methods', 'dml',
                                  '--work-dir', str(tmp_path), '--jobs', '1'])
    assert len(calls) == 1
    assert calls[0][2] == 'configs/dml/dml_resnet32x2_digits.py'
    assert 'randomness.seed=3' in calls[0]
    assert numbers['DML']['predicts'] == 'ensemble'
    assert numbers['DML']['branches'] == [pytest.approx(40.5)]
