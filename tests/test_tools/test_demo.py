# Copyright (c) ffl_mm contributors.
"""tools/demo.py (what ``make demo`` runs): one real run, end to end, and
its command building and table with the training faked."""
import json
import os
import os.path as osp
import re
import sys

import pytest

from conftest import REPO, TINY_DIGITS, distinct_second, tool_module


@pytest.mark.e2e
def test_demo_trains_tests_and_tabulates(tmp_path, monkeypatch, capsys):
    """``make demo``'s tool: FFL and its baseline through tools/train.py
    and tools/test.py, the table with every output, the plots, and an
    export command that runs as printed. The tools run in this process
    (``demo.run`` would start each in a fresh interpreter)."""
    import uuid

    from mmengine.logging import MMLogger
    demo = tool_module('demo.py')
    monkeypatch.setenv('FFL_MM_NO_MALLOC_TUNING', '1')

    def in_process(args):
        distinct_second()
        MMLogger.get_instance(f'ffl_mm_test_{uuid.uuid4().hex}')
        tool_module(osp.basename(args[0])).main(args[1:])

    monkeypatch.setattr(demo, 'run', in_process)
    method = 'ffl'
    work = tmp_path / 'demo'
    demo.main(['--method', method, '--seeds', '0', '--work-dir', str(work),
               '--cfg-options', *TINY_DIGITS, 'train_cfg.max_epochs=1'])
    out = capsys.readouterr().out
    # tools/test.py printed every output of the FFL model
    for key in ('accuracy/top1', 'accuracy/fused_top1',
                'accuracy/ensemble_top1', 'accuracy/branch0_top1',
                'accuracy/branch1_top1'):
        assert re.search(rf'Epoch\(test\).*{key}: [\d.]+', out), key
    # the FFL log shows every loss term and the ramp-up weight
    for key in ('loss_ce_branch0', 'loss_ce_fused', 'loss_kd_branch1',
                'loss_kd_fused', 'kd_weight'):
        assert key in out
    table = (work / 'results.md').read_text()
    name = method.upper()
    for row in (f'{name} branch 0', f'{name} branch 1', f'{name} ensemble',
                f'{name} fused', 'baseline (single ResNet-32)'):
        assert f'| {row} |' in table
    results = json.loads((work / 'results.json').read_text())
    assert results['seeds'] == [0]
    tested = json.loads(
        (work / f'{method}_seed0' / 'test_metrics.json').read_text())
    assert results['top1']['FFL fused'] == [tested['accuracy/fused_top1']]
    assert results['top1']['FFL branch 1'] == [
        tested['accuracy/branch1_top1']]
    assert osp.isfile(work / f'{method}_seed0' / 'epoch_1.pth')
    # the analysis from the logs: table and non-empty plots
    analysis = (work / 'analysis' / 'results.md').read_text()
    assert f'| {name} fused |' in analysis and '| baseline' in analysis
    for png in ('accuracy.png', 'losses.png'):
        data = (work / 'analysis' / png).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
    assert f'tools/export.py {"configs/" + method}' in out
    # the printed command runs as printed from the repository root: its
    # interpreter is this one (.venv/bin/python after make), its files exist
    line = out.split('plain MMPretrain model:')[1].strip().splitlines()[0]
    python, tool, config, checkpoint = line.split()[:4]
    assert osp.realpath(osp.join(REPO, python)) == \
        osp.realpath(sys.executable)
    for path in (tool, config, checkpoint):
        assert osp.isfile(osp.join(REPO, path)), path


def test_demo_commands_and_table(tmp_path, monkeypatch):
    """Without --cfg-options the demo passes none to the tools (argparse
    rejects an empty --cfg-options), and the table sums up the seeds."""
    demo = tool_module('demo.py')
    calls = []

    def fake_run(args):
        calls.append(args)
        work = args[args.index('--work-dir') + 1]
        if args[0].endswith('train.py'):
            os.makedirs(work, exist_ok=True)
            with open(osp.join(work, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(work, 'epoch_15.pth'))
        else:
            fused = 'baseline' not in work
            seed = int(work[-1])
            metrics = {'accuracy/top1': 90.0 + seed}
            if fused:
                metrics.update({
                    'accuracy/fused_top1': 95.0 + seed,
                    'accuracy/ensemble_top1': 94.0,
                    'accuracy/branch0_top1': 93.0,
                    'accuracy/branch1_top1': 92.0
                })
            with open(args[args.index('--out') + 1], 'w') as f:
                json.dump(metrics, f)

    monkeypatch.setattr(demo, 'run', fake_run)
    monkeypatch.setattr(demo, 'analyze', lambda *args: [])
    rows = demo.main(['--seeds', '0', '2', '--work-dir', str(tmp_path)])
    test_calls = [c for c in calls if c[0].endswith('test.py')]
    assert len(calls) == 8 and len(test_calls) == 4
    assert all('--cfg-options' not in c for c in test_calls)
    assert rows['FFL fused'] == [95.0, 97.0]
    assert rows['baseline (single ResNet-32)'] == [90.0, 92.0]
    table = (tmp_path / 'results.md').read_text()
    assert '| FFL fused | 95.00 | 97.00 | 96.00 ± 1.41 |' in table
    # METHOD=mfef trains MFEF's digits config against the same baseline
    calls.clear()
    rows = demo.main(['--method', 'mfef', '--seeds', '1', '--work-dir',
                      str(tmp_path / 'mfef')])
    trained = [c[1] for c in calls if c[0].endswith('train.py')]
    assert trained == ['configs/mfef/mfef_resnet32x2_digits.py',
                       'configs/baselines/resnet32_digits.py']
    assert rows['MFEF fused'] == [96.0]
    single = (tmp_path / 'mfef' / 'results.md').read_text()
    assert '| MFEF fused | 96.00 |' in single and '±' not in single
    # METHOD=dml and METHOD=one: their digits configs, the same baseline
    for method in ('dml', 'one'):
        calls.clear()
        rows = demo.main(['--method', method, '--seeds', '1', '--work-dir',
                          str(tmp_path / method)])
        trained = [c[1] for c in calls if c[0].endswith('train.py')]
        assert trained == [f'configs/{method}/{method}_resnet32x2_digits.py',
                           'configs/baselines/resnet32_digits.py']
        assert rows[f'{method.upper()} ensemble'] == [94.0]


def test_okddip_demo_names_and_exports_its_leader(tmp_path, monkeypatch,
                                                  capsys):
    """METHOD=okddip: the leader's row says so, and the printed export
    command exports the leader (branch 3), the model OKDDip deploys."""
    demo = tool_module('demo.py')

    def fake_run(args):
        work = args[args.index('--work-dir') + 1]
        if args[0].endswith('train.py'):
            os.makedirs(work, exist_ok=True)
            with open(osp.join(work, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(REPO, 'README.md'))  # an existing file
            return
        metrics = {'accuracy/top1': 97.0}
        if 'baseline' not in work:
            metrics.update({f'accuracy/branch{i}_top1': 90.0 + i
                            for i in range(4)})
            metrics['accuracy/ensemble_top1'] = 96.0
        with open(args[args.index('--out') + 1], 'w') as f:
            json.dump(metrics, f)

    monkeypatch.setattr(demo, 'run', fake_run)
    monkeypatch.setattr(demo, 'analyze', lambda *args: [])
    rows = demo.main(['--method', 'okddip', '--seeds', '0', '--work-dir',
                      str(tmp_path)])
    assert rows['OKDDip branch 3 (leader)'] == [93.0]
    assert rows['OKDDip branch 2'] == [92.0]
    out = capsys.readouterr().out
    assert 'Export a student (branch 3, the leader)' in out
    assert 'configs/okddip/okddip_resnet32x4_digits.py' in out
    assert '--branch 3 --out' in out
