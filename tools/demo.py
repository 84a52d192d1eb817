# Copyright (c) ffl_mm contributors.
"""The `make demo` job: FFL (or any method of the model zoo) against its
single-network baseline.

For every seed it trains, through ``tools/train.py``, the model of
``--method`` (``ffl``, default, or the folder of any method of
``model-index.yml``: ``mfef``, ``dml``, ``one``, ``clilr``, ``okddip``,
``kdcl``) and the baseline with the same data, schedule and budget, evaluates both through
``tools/test.py`` and prints one table: each branch, the ensemble (ONE: the
gated one), the fused classifier (FFL, MFEF) and the baseline (top-1 %,
mean ± std over the seeds). The table is also written to
``<work-dir>/results.md`` and the numbers to ``<work-dir>/results.json``;
``tools/analysis_tools/analyze_runs.py`` then
writes ``<work-dir>/analysis/`` (the final-validation table and PNG plots of
accuracy and every loss term per epoch), and the demo prints how to export
a student from the run.

Example::

    python tools/demo.py --seeds 0 1 2 --work-dir work_dirs/demo
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

TOOLS = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(TOOLS)
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(TOOLS, 'analysis_tools'))  # ffl_mm_analysis

from ffl_mm_analysis.methods import shipped_methods  # noqa: E402
from ffl_mm_analysis.results import (markdown_table,  # noqa: E402
                                     output_label, output_roles,
                                     output_top1, write_report)
from ffl_mm.utils.output_names import (branch_index,  # noqa: E402
                                              metric_key)
from ffl_mm.tools_support.mmpretrain_tools import python_command  # noqa: E402

#: every method of the model zoo (model-index.yml): its digits config and
#: its name in tables (the metafile's collection)
METHODS = shipped_methods(REPO)
METHOD_CONFIG = {name: m.demo_config for name, m in METHODS.items()}
METHOD_LABELS = {name: m.label for name, m in METHODS.items()}
BASELINE_CONFIG = 'configs/baselines/resnet32_digits.py'
BASELINE_NAME = 'baseline (single ResNet-32)'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--method', choices=sorted(METHOD_CONFIG), default='ffl')
    parser.add_argument(
        '--seeds', type=int, nargs='+', default=[0], help='random seeds')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='extra key=value overrides for both configs')
    return parser.parse_args(argv)


def run(args):
    """Run a tool of this folder; stream its log to the console."""
    cmd = [sys.executable, *args]
    print('>>', ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def train_and_test(config, work_dir, seed, options):
    """Train ``config`` with ``seed``; return the test metrics dict."""
    overrides = [f'randomness.seed={seed}', *options]
    run([
        osp.join(TOOLS, 'train.py'), config, '--work-dir', work_dir,
        '--cfg-options', *overrides
    ])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    metrics_file = osp.join(work_dir, 'test_metrics.json')
    test_args = [
        osp.join(TOOLS, 'test.py'), config, checkpoint, '--work-dir',
        work_dir, '--out', metrics_file, '--out-item', 'metrics'
    ]
    run(test_args + (['--cfg-options', *options] if options else []))
    with open(metrics_file) as f:
        return json.load(f)


def make_table(rows, seeds):
    """A markdown table: one row per output, one column per seed."""
    return markdown_table(rows, [f'seed {s}' for s in seeds])


def analyze(work_root, method, seeds):
    """``tools/analysis_tools/analyze_runs.py`` on the runs: table and
    plots in ``<work_root>/analysis``; returns the written paths."""
    report = write_report(
        [osp.join(work_root, f'{method}_seed{s}') for s in seeds],
        osp.join(work_root, 'analysis'),
        [osp.join(work_root, f'baseline_seed{s}') for s in seeds],
        method=METHOD_LABELS[method],
        baseline=BASELINE_NAME,
        columns=[f'seed {s}' for s in seeds])
    return [report['table'], *report['plots']]


def main(argv=None):
    args = parse_args(argv)
    method_cfg = METHOD_CONFIG[args.method]
    work_root = osp.abspath(args.work_dir)
    os.makedirs(work_root, exist_ok=True)
    rows = {}
    roles = output_roles(osp.join(REPO, method_cfg))
    for seed in args.seeds:
        method = train_and_test(
            method_cfg, osp.join(work_root, f'{args.method}_seed{seed}'),
            seed, args.cfg_options)
        base = train_and_test(BASELINE_CONFIG,
                              osp.join(work_root, f'baseline_seed{seed}'),
                              seed, args.cfg_options)
        for name, top1 in output_top1(method).items():
            rows.setdefault(
                output_label(name, METHOD_LABELS[args.method], roles),
                []).append(top1)
        rows.setdefault(BASELINE_NAME, []).append(base[metric_key(None)])
    table = make_table(rows, args.seeds)
    title = (f'Digits test split (450 images), top-1 %: '
             f'{method_cfg} vs {BASELINE_CONFIG}')
    with open(osp.join(work_root, 'results.md'), 'w') as f:
        f.write(f'{title}\n\n{table}\n')
    with open(osp.join(work_root, 'results.json'), 'w') as f:
        json.dump({'seeds': args.seeds, 'top1': rows}, f, indent=2)
    print(f'\n{title}\n\n{table}\n')
    print(f'Written to {osp.join(work_root, "results.md")} and results.json')
    written = analyze(work_root, args.method, args.seeds)
    print('Validation curves and losses per epoch: ' + ', '.join(written))
    seed = args.seeds[0]
    checkpoint = osp.join(work_root, f'{args.method}_seed{seed}',
                          'last_checkpoint')
    with open(checkpoint) as f:
        checkpoint = osp.relpath(f.read().strip(), REPO)
    exported = osp.relpath(osp.join(work_root, 'exported'), REPO)
    # the branch a method deploys (OKDDip: its leader), else branch 0
    branch, role = next(((branch_index(n), r) for n, r in roles.items()
                         if branch_index(n) is not None), (0, None))
    what = f'branch {branch}' + (f', the {role}' if role else '')
    print(f'\nExport a student ({what}) as a plain MMPretrain model:\n'
          f'  {python_command()} tools/export.py {method_cfg} {checkpoint} '
          f'--branch {branch} '
          f'--out {exported}')
    return rows


if __name__ == '__main__':
    main()
