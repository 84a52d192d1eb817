# Copyright (c) ffl_mm contributors.
"""Reading MMEngine logs into tables and plots."""
import json

import pytest

from helpers.lab import lab

results = lab('results')
def _write_run(root, name, records, stamp='20261123_000000'):
    vis = root / name / stamp / 'vis_data'
    vis.mkdir(parents=True)
    with open(vis / 'scalars.json', 'w') as f:
        for record in records:
            f.write(json.dumps(record) + '\n')
    return str(root / name)


def _ffl_records(fused):
    train = [
        dict(loss=3.0, loss_ce_branch0=1.0, loss_ce_fused=1.0,
             loss_kd_branch0=0.5, kd_weight=0.1, lr=0.1, epoch=1, iter=1,
             step=1),
        dict(loss=2.0, loss_ce_branch0=0.6, loss_ce_fused=0.8,
             loss_kd_branch0=0.3, kd_weight=0.1, lr=0.1, epoch=1, iter=2,
             step=2),
        dict(loss=1.0, loss_ce_branch0=0.2, loss_ce_fused=0.3,
             loss_kd_branch0=0.2, kd_weight=1.0, lr=0.1, epoch=2, iter=3,
             step=3),
    ]
    val = [
        {'accuracy/top1': 50.0, 'accuracy/fused_top1': 50.0,
         'accuracy/ensemble_top1': 48.0, 'accuracy/branch0_top1': 45.0,
         'accuracy/branch1_top1': 44.0, 'step': 1},
        {'accuracy/top1': fused, 'accuracy/fused_top1': fused,
         'accuracy/ensemble_top1': 78.0, 'accuracy/branch0_top1': 75.0,
         'accuracy/branch1_top1': 74.0, 'step': 2},
    ]
    return train + val


def test_curves_and_final_numbers(tmp_path):
    run = _write_run(tmp_path, 'ffl', _ffl_records(80.0))
    train, val = results.split_records(results.load_records(run))
    losses = results.loss_curves(train)
    assert losses['loss_ce_branch0'] == {1: pytest.approx(0.8), 2: 0.2}
    assert losses['kd_weight'] == {1: pytest.approx(0.1), 2: 1.0}
    assert 'lr' not in losses
    acc = results.accuracy_curves(val)
    assert list(acc) == ['branch0', 'branch1', 'ensemble', 'fused']
    assert acc['fused'] == {1: 50.0, 2: 80.0}
    assert results.final_top1(run)['branch1'] == 74.0


def test_resumed_run_later_records_win(tmp_path):
    run = _write_run(tmp_path, 'ffl', _ffl_records(80.0))
    # a resumed run re-evaluates epoch 2 in a new timestamp folder
    _write_run(tmp_path, 'ffl', [
        {'accuracy/top1': 81.0, 'accuracy/fused_top1': 81.0,
         'accuracy/ensemble_top1': 79.0, 'accuracy/branch0_top1': 76.0,
         'accuracy/branch1_top1': 75.0, 'step': 2}
    ], stamp='20261124_000000')
    assert results.final_top1(run)['fused'] == 81.0


def test_table_and_tool(tmp_path, run_in_process):
    runs = [_write_run(tmp_path, f'ffl_seed{i}', _ffl_records(80.0 + i))
            for i in range(2)]
    base = [_write_run(tmp_path, 'base', [
        {'accuracy/top1': 70.0, 'step': 1}, {'accuracy/top1': 72.0,
                                             'step': 2}])]
    rows = results.top1_rows(runs, base, 'FFL', 'baseline')
    assert rows['FFL fused'] == [80.0, 81.0]
    assert rows['baseline'] == [72.0]
    table = results.markdown_table(rows, ['seed 0', 'seed 1'])
    assert '| FFL fused | 80.00 | 81.00 | 80.50 ± 0.71 |' in table
    # one baseline run: its value, no '± 0.00'
    assert '| baseline | 72.00 |  | 72.00 |' in table
    single = results.markdown_table({'FFL fused': [80.0]}, ['seed 0'])
    assert single.splitlines()[0] == '| model | seed 0 |'
    assert single.splitlines()[2] == '| FFL fused | 80.00 |'
    assert '±' not in single
    out = tmp_path / 'analysis'
    _, log = run_in_process('analysis_tools/analyze_runs.py', *runs,
                            '--baseline', *base, '--out', out)
    assert '| FFL branch 0 | 75.00 | 75.00 | 75.00 ± 0.00 |' in log
    assert '| baseline | 72.00 |  | 72.00 |' in log
    for name in ('results.md', 'accuracy.png', 'losses.png'):
        assert (out / name).stat().st_size > 0
    assert (out / 'accuracy.png').read_bytes()[:4] == b'\x89PNG'


def test_missing_logs_are_a_clear_error(tmp_path, run_in_process):
    with pytest.raises(SystemExit, match=r'no \*/vis_data/scalars.json'):
        run_in_process('analysis_tools/analyze_runs.py', tmp_path)


def test_the_final_result_is_the_last_epoch_the_config_asks_for(
        tmp_path, run_in_process):
    """A log that lost its last validation record (the config asks for 3
    epochs, the log ends at epoch 2) is not reported as the final result:
    the error names the run, both epochs and what to do."""
    records = _ffl_records(80.0)
    run = _write_run(tmp_path, 'ffl', records)
    (tmp_path / 'ffl' / 'ffl.py').write_text(
        'train_cfg = dict(by_epoch=True, max_epochs=2)\n')
    assert results.final_top1(run)['fused'] == 80.0
    (tmp_path / 'ffl' / 'ffl.py').write_text(
        'train_cfg = dict(by_epoch=True, max_epochs=3)\n')
    with pytest.raises(results.ResultsError,
                       match=rf"{run}: the log's last validation is of "
                       r'epoch 2, but the run\'s config asks for '
                       r'train_cfg.max_epochs=3; the run has not finished'):
        results.final_top1(run)
    (tmp_path / 'ffl' / 'epoch_3.pth').write_bytes(b'')
    with pytest.raises(SystemExit, match=r'analyze_runs: .*epoch_3.pth '
                       r'exists, so the log lost its final records'):
        run_in_process('analysis_tools/analyze_runs.py', run)


def test_a_damaged_log_line_is_named(tmp_path):
    run = _write_run(tmp_path, 'ffl', _ffl_records(80.0))
    path = tmp_path / 'ffl' / '20261123_000000' / 'vis_data' / 'scalars.json'
    with open(path, 'a') as f:
        f.write('{"accuracy/top1": 8\n')  # a write cut short
    with pytest.raises(results.ResultsError,
                       match=rf'{path}, line 6: Expecting .* the log is '
                       'damaged'):
        results.final_top1(run)
    path.write_text(path.read_text().replace('{"accuracy/top1": 8\n',
                                             '[1, 2]\n'))
    with pytest.raises(results.ResultsError,
                       match=r'line 6: not a JSON object'):
        results.load_records(run)


def test_runs_are_ordered_by_what_they_record_not_by_folder_name(
        tmp_path):
    """A clock set back: the resumed run's folder sorts before the first
    run's, its records still come after and win."""
    run = _write_run(tmp_path, 'ffl', _ffl_records(80.0),
                     stamp='20261124_000000')
    _write_run(tmp_path, 'ffl', [
        dict(loss=0.5, epoch=2, iter=3, step=3),
        {'accuracy/top1': 81.0, 'accuracy/fused_top1': 81.0,
         'accuracy/ensemble_top1': 79.0, 'accuracy/branch0_top1': 76.0,
         'accuracy/branch1_top1': 75.0, 'step': 2}
    ], stamp='20261123_000000')
    assert [p.split('/')[-3] for p in results.scalars_files(run)] == [
        '20261124_000000', '20261123_000000']
    assert results.final_top1(run)['fused'] == 81.0
