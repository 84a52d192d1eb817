# Copyright (c) ffl_mm contributors.
"""Read the logs of MMEngine work dirs: accuracy of every output and each
loss term per epoch, as tables and plots.

MMEngine's ``LocalVisBackend`` writes ``<work_dir>/<timestamp>/vis_data/
scalars.json``: one JSON object per line, training records (``loss``,
``loss_ce_branch0``, ..., ``epoch``, ``iter``) every logging interval and
validation records (``accuracy/top1``, ``accuracy/branch0_top1``, ...,
``step`` = epoch) after every evaluation. A resumed run adds a timestamp
folder; the folders are read in the order of what they record (the epoch
and iteration each starts at), not by name or clock, and later records
win. A final result is read only from the validation record of the last
epoch the run's config asks for.

Used by ``tools/analysis_tools/analyze_runs.py`` and ``tools/demo.py``.
"""
import glob
import json
import os.path as osp
import statistics
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from ffl_mm.utils.output_names import (branch_index, metric_key,
                                              output_order, parse_metric_key)


class ResultsError(ValueError):
    """A work dir without the logs this module reads."""


def _read_lines(path: str) -> List[dict]:
    """The records of one ``scalars.json``; a line that is not a JSON
    object is an error naming the file and line."""
    records = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                record, reason = None, error.msg
            else:
                reason = 'not a JSON object'
            if not isinstance(record, dict):
                raise ResultsError(
                    f'{path}, line {number}: {reason} ({line[:60]!r}): the '
                    'log is damaged (a run killed while writing it, or an '
                    'edit). Remove or repair the line to read the run.')
            records.append(record)
    return records


def _start(records: Sequence[dict]) -> Tuple[int, int]:
    """Where a run's log starts: the epoch and iteration of its first
    record (a validation record counts as the end of its epoch)."""
    for record in records:
        if 'iter' in record and 'epoch' in record:
            return int(record['epoch']), int(record['iter'])
        if 'step' in record:  # validation: after the epoch's training
            return int(record['step']) + 1, -1
    return -1, -1


def scalars_files(work_dir: str) -> List[str]:
    """Every ``scalars.json`` of a work dir, in the order of what they
    record (:func:`_start`), the folder name breaking ties: a resumed run
    starts where its checkpoint ended, whatever its timestamp says (a clock
    set back gives a later run an earlier folder name)."""
    return [path for path, _ in _runs(work_dir)]


def _runs(work_dir: str) -> List[Tuple[str, List[dict]]]:
    """``(path, records)`` of every ``scalars.json``, in run order."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    if not files:
        raise ResultsError(
            f'{work_dir}: no */vis_data/scalars.json; is it the --work-dir '
            'of a tools/train.py run (MMEngine LocalVisBackend)?')
    runs = [(path, _read_lines(path)) for path in files]
    return sorted(runs, key=lambda run: (_start(run[1]), run[0]))


def load_records(work_dir: str) -> List[dict]:
    """The JSON records of every run in ``work_dir``, in order."""
    return [record for _, records in _runs(work_dir) for record in records]


def split_records(records: Sequence[dict]):
    """``(train, val)``: training records (with ``loss``) and validation
    records (with ``accuracy/top1``)."""
    train = [r for r in records if 'loss' in r and 'epoch' in r]
    val = [r for r in records if 'accuracy/top1' in r]
    return train, val


def _means(triples) -> Dict[str, Dict[int, float]]:
    """``(name, epoch, value)`` triples to ``{name: {epoch: mean}}``:
    names in first-seen order, epochs sorted."""
    grouped: Dict[str, Dict[int, List[float]]] = defaultdict(
        lambda: defaultdict(list))
    for name, epoch, value in triples:
        grouped[name][epoch].append(float(value))
    return {
        name: OrderedDict(
            (e, statistics.fmean(v)) for e, v in sorted(epochs.items()))
        for name, epochs in grouped.items()
    }


def loss_curves(train: Sequence[dict]) -> Dict[str, Dict[int, float]]:
    """Each loss term (and ``kd_weight``) averaged per epoch:
    ``{name: {epoch: value}}``, epochs 1-based as logged."""
    curves = _means((key, int(record['epoch']), value) for record in train
                    for key, value in record.items()
                    if key.startswith('loss') or key == 'kd_weight')
    return dict(sorted(curves.items()))


def output_top1(metrics: Dict[str, float]) -> Dict[str, float]:
    """Top-1 of every named output in a metrics dict (``accuracy/
    branch0_top1``, ..., ``accuracy/fused_top1``; the selected output's
    ``accuracy/top1`` and top-k for k > 1 left out), in table order."""
    named = {}
    for key, value in metrics.items():
        parsed = parse_metric_key(key)
        if parsed and parsed[0] and parsed[1] == 1 and \
                key == metric_key(*parsed):
            named[parsed[0]] = value
    return OrderedDict(sorted(named.items(), key=lambda kv: output_order(
        kv[0])))


def accuracy_curves(val: Sequence[dict]) -> Dict[str, Dict[int, float]]:
    """Top-1 of every output per evaluated epoch: ``{output: {epoch:
    top1}}`` with outputs ``branch{i}``, ``ensemble``, ``fused``, or
    ``top1`` for a plain classifier. Later records of an epoch win (a
    resumed run re-evaluating it)."""
    curves: Dict[str, Dict[int, float]] = defaultdict(OrderedDict)
    for record in val:
        epoch = int(record.get('step', record.get('epoch', 0)))
        named = output_top1(record)
        if not named:
            named = {'top1': record[metric_key(None)]}
        for name, value in named.items():
            curves[name][epoch] = float(value)
    return {k: OrderedDict(sorted(v.items())) for k, v in
            sorted(curves.items(), key=lambda kv: output_order(kv[0]))}


def final_results(work_dir: str) -> Tuple[Dict[str, float], float]:
    """``(outputs, prediction)`` at the last epoch the run's config asks for
    (``train_cfg.max_epochs`` of the work dir's config copy), from one read
    of the logs: the top-1 of every output, and of the prediction
    (``accuracy/top1``: the output ``test_cfg.predict`` selects).

    Raises:
        ResultsError: The log has no validation record of that epoch (a
            run that has not finished, or a log that lost its last
            records), naming the run, the epoch found and the one asked for.
    """
    _, val = split_records(load_records(work_dir))
    if not val:
        raise ResultsError(f'{work_dir}: the log has no validation '
                           'results (accuracy/top1).')
    last = max(int(r.get('step', r.get('epoch', 0))) for r in val)
    cfg = run_config(work_dir)
    final = (cfg.get('train_cfg') or {}).get('max_epochs') \
        if cfg is not None else None
    if final is not None and last != int(final):
        saved = osp.isfile(osp.join(work_dir, f'epoch_{final}.pth'))
        raise ResultsError(
            f'{work_dir}: the log\'s last validation is of epoch {last}, '
            f'but the run\'s config asks for train_cfg.max_epochs={final}; '
            + (f'epoch_{final}.pth exists, so the log lost its final '
               'records: evaluate that checkpoint with tools/test.py.'
               if saved else 'the run has not finished: resume it with '
               '--resume.'))
    outputs = {name: curve[last]
               for name, curve in accuracy_curves(val).items()
               if last in curve}
    prediction = [r for r in val
                  if int(r.get('step', r.get('epoch', 0))) == last][-1]
    return outputs, float(prediction[metric_key(None)])


def final_top1(work_dir: str) -> Dict[str, float]:
    """Top-1 of every output at the last evaluated epoch."""
    return final_results(work_dir)[0]


def final_prediction_top1(work_dir: str) -> float:
    """Top-1 of the prediction at the last evaluated epoch."""
    return final_results(work_dir)[1]


def summarise(values: Sequence[float]) -> str:
    """``'mean ± std'`` (sample std); one value is shown alone, as one
    run has no spread."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f'{mean:.2f}'
    return f'{mean:.2f} ± {statistics.stdev(values):.2f}'


def markdown_table(rows: Dict[str, Sequence[float]],
                   columns: Sequence[str]) -> str:
    """One row per model, one column per run, then mean ± std (only for
    more than one run: one run has no spread to show)."""
    spread = len(columns) > 1
    head = ['model', *columns] + (['mean ± std'] if spread else [])
    lines = [
        '| ' + ' | '.join(head) + ' |',
        '|' + '|'.join(['---'] * len(head)) + '|',
    ]
    for name, values in rows.items():
        cells = [f'{values[i]:.2f}' if i < len(values) else ''
                 for i in range(len(columns))]
        if spread:
            cells.append(summarise(values))
        lines.append('| ' + ' | '.join([name, *cells]) + ' |')
    return '\n'.join(lines)


def output_label(name: str, method: str = 'FFL',
                 roles: Optional[Dict[str, str]] = None) -> str:
    """The table row of an output: ``'FFL branch 0'``, ``'FFL fused'``;
    with its role from ``roles`` (:func:`output_roles`):
    ``'OKDDip branch 3 (leader)'``."""
    index = branch_index(name)
    if index is not None:
        label = f'{method} branch {index}'
    else:
        label = f'{method} {name}' if name != 'top1' else method
    role = (roles or {}).get(name)
    return f'{label} ({role})' if role else label


def run_config(work_dir: str):
    """The config copy ``tools/train.py`` writes into a work dir, parsed;
    None where the work dir has no single ``*.py`` file."""
    from mmengine.config import Config
    copies = glob.glob(osp.join(work_dir, '*.py'))
    return Config.fromfile(copies[0]) if len(copies) == 1 else None


def output_roles(config) -> Dict[str, str]:
    """``{output: role}`` of a config's model (a ``Config``, a config file
    or a work dir with the config copy ``tools/train.py`` writes), from its
    class's ``output_roles``: OKDDip's last branch is its leader. Empty for
    a model without roles or a work dir without a config copy."""
    from mmengine.config import Config

    from ffl_mm.registry import MODELS
    if isinstance(config, str):
        config = run_config(config) if osp.isdir(config) else \
            Config.fromfile(config)
    if config is None:
        return {}
    model = config.get('model') or {}
    if not model.get('type'):
        return {}
    cls = MODELS.get(str(model['type']).split('.')[-1])
    if cls is None or not hasattr(cls, 'output_roles'):
        return {}
    backbone = model.get('backbone')
    num_branches = model.get('num_branches') or (
        len(backbone) if isinstance(backbone, (list, tuple)) else None)
    return cls.output_roles(num_branches) if num_branches else {}


def top1_rows(work_dirs: Sequence[str], baseline_dirs: Sequence[str] = (),
              method: str = 'FFL', baseline: str = 'baseline'
              ) -> Dict[str, List[float]]:
    """Final top-1 of every output of each run, and of the baselines."""
    rows: Dict[str, List[float]] = OrderedDict()
    for work_dir in work_dirs:
        roles = output_roles(work_dir)
        for name, value in final_top1(work_dir).items():
            rows.setdefault(output_label(name, method, roles),
                            []).append(value)
    for work_dir in baseline_dirs:
        rows.setdefault(baseline, []).append(final_top1(work_dir)['top1'])
    return rows


def _mean_curves(curve_sets: Sequence[Dict[str, Dict[int, float]]]):
    """Element-wise mean over runs of ``{name: {epoch: value}}``."""
    return _means((name, epoch, value) for curves in curve_sets
                  for name, curve in curves.items()
                  for epoch, value in curve.items())


def plot_results(work_dirs: Sequence[str], out_dir: str,
                 baseline_dirs: Sequence[str] = (), method: str = 'FFL',
                 baseline: str = 'baseline') -> List[str]:
    """``accuracy.png`` (top-1 of every output per epoch, baseline dashed)
    and ``losses.png`` (each loss term and the KD weight per epoch), means
    over the given runs. Returns the written paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    runs = [split_records(load_records(d)) for d in work_dirs]
    acc = _mean_curves([accuracy_curves(val) for _, val in runs])
    roles = output_roles(work_dirs[0]) if work_dirs else {}
    losses = _mean_curves([loss_curves(train) for train, _ in runs])
    base = _mean_curves([
        accuracy_curves(split_records(load_records(d))[1])
        for d in baseline_dirs
    ])
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in acc.items():
        ax.plot(list(curve), list(curve.values()), marker='.',
                label=output_label(name, method, roles))
    for curve in base.values():
        ax.plot(list(curve), list(curve.values()), 'k--', label=baseline)
    ax.set_xlabel('epoch')
    ax.set_ylabel('top-1 (%)')
    ax.set_title(f'{method}: validation top-1 per output'
                 + (f' (mean of {len(work_dirs)} runs)'
                    if len(work_dirs) > 1 else ''))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = osp.join(out_dir, 'accuracy.png')
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    groups = [('cross-entropy', 'loss_ce'), ('distillation', 'loss_kd'),
              ('total and KD weight', None)]
    fig, axes = plt.subplots(1, len(groups), figsize=(15, 4.2))
    for ax, (title, prefix) in zip(axes, groups):
        for name, curve in losses.items():
            if prefix is None:
                show = name in ('loss', 'kd_weight')
            else:
                show = name.startswith(prefix)
            if show:
                ax.plot(list(curve), list(curve.values()), marker='.',
                        label=name)
        ax.set_title(title)
        ax.set_xlabel('epoch')
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f'{method}: training losses per epoch (mean over the '
                 'iterations logged)')
    fig.tight_layout()
    path = osp.join(out_dir, 'losses.png')
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def write_report(work_dirs: Sequence[str], out_dir: str,
                 baseline_dirs: Sequence[str] = (), method: str = 'FFL',
                 baseline: str = 'baseline',
                 columns: Optional[Sequence[str]] = None) -> dict:
    """``results.md`` (final top-1 table) and the two plots in
    ``out_dir``; returns the paths and the rows."""
    import os
    os.makedirs(out_dir, exist_ok=True)
    rows = top1_rows(work_dirs, baseline_dirs, method, baseline)
    columns = list(columns or [osp.basename(osp.normpath(d))
                               for d in work_dirs])
    # baseline rows may have other run counts: pad the columns
    width = max(len(v) for v in rows.values())
    columns = (columns + [''] * width)[:width]
    table = markdown_table(rows, columns)
    table_path = osp.join(out_dir, 'results.md')
    with open(table_path, 'w', encoding='utf-8') as f:
        f.write(f'Final validation top-1 (%)\n\n{table}\n')
    plots = plot_results(work_dirs, out_dir, baseline_dirs, method,
                         baseline)
    return dict(table=table_path, plots=plots, rows=rows, text=table)
