# Copyright (c) ffl_mm contributors.
"""Tables and plots from the logs of FFL/MFEF runs and their baselines.

Reads ``<work_dir>/*/vis_data/scalars.json`` (MMEngine's LocalVisBackend)
of one or more runs (e.g. seeds) and writes to ``--out``:

* ``results.md``: the final validation top-1 of every branch, the ensemble
  and the fused classifier, one column per run plus mean ± std, with the
  baseline runs as a last row;
* ``accuracy.png``: top-1 of every output per epoch (baseline dashed);
* ``losses.png``: each cross-entropy and distillation term, the total loss
  and the KD ramp-up weight per epoch.

Example::

    python tools/analysis_tools/analyze_runs.py \\
        work_dirs/demo/ffl/ffl_seed0 \\
        --baseline work_dirs/demo/ffl/baseline_seed0 \\
        --out work_dirs/demo/ffl/analysis
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # ffl_mm_analysis

from ffl_mm_analysis import results  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dirs', nargs='+',
                        help='work dirs of FFL/MFEF runs (e.g. one per seed)')
    parser.add_argument('--baseline', nargs='*', default=[],
                        help='work dirs of single-network baseline runs')
    parser.add_argument('--out', help='output directory (default: '
                        '<first work dir>/analysis)')
    parser.add_argument('--method', default='FFL',
                        help='name in the table and plots')
    parser.add_argument('--baseline-name', default='baseline')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = args.out or osp.join(args.work_dirs[0], 'analysis')
    try:
        report = results.write_report(
            args.work_dirs, out, args.baseline, args.method,
            args.baseline_name)
    except results.ResultsError as error:
        raise SystemExit(f'analyze_runs: {error}') from None
    print(report['text'])
    print(f'\nWritten: {report["table"]}, ' + ', '.join(report['plots']))
    return report


if __name__ == '__main__':
    main()
