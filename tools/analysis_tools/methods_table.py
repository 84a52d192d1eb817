# Copyright (c) ffl_mm contributors.
"""Every method against the single network on the digits data: the table
of ``docs/results.md`` and the README.

Trains the digits config of each method of ``tools/demo.py`` (FFL, MFEF,
DML, ONE, CL-ILR, OKDDip) and the single ResNet-32 through
``tools/train.py`` for every seed, two runs at a time with one thread each
(a run with a ``done`` mark is kept), and writes the final validation
top-1 (mean ± std over the seeds) of each method's prediction (what
``test_cfg.predict`` selects: FFL's and MFEF's fused classifier, the
ensembles of DML, ONE and CL-ILR, OKDDip's leader), its ensemble and the
mean of its branches, as a markdown table (``results.md``) and JSON.

Example::

    python tools/analysis_tools/methods_table.py --seeds 0 1 2 \\
        --work-dir work_dirs/methods
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(TOOLS)
sys.path.insert(0, REPO)
sys.path.insert(0, TOOLS)
sys.path.insert(0, osp.join(TOOLS, 'analysis_tools'))

from demo import (BASELINE_CONFIG, METHOD_CONFIG,  # noqa: E402
                  METHOD_LABELS)
from ffl_mm_analysis.results import (ResultsError,  # noqa: E402
                                     final_prediction_top1, final_results,
                                     output_roles, run_config, summarise)
from ffl_mm_analysis.runs import Run, train_all  # noqa: E402
from ffl_mm.utils.output_names import (ENSEMBLE,  # noqa: E402
                                              branch_index)

#: the methods in the table's order (model-index.yml's)
METHODS = tuple(METHOD_CONFIG)
SINGLE = 'single'


def method_row(work_dirs):
    """The numbers of one method's runs: ``prediction``, ``ensemble``
    and ``branches`` (each seed's mean over its branches) lists, and
    ``predicts``, the name of the predicted output."""
    finals = [final_results(d) for d in work_dirs]
    branches = [statistics.fmean(v for k, v in outputs.items()
                                 if branch_index(k) is not None)
                for outputs, _ in finals]
    return dict(predicts=predicted_output(work_dirs[0], *finals[0]),
                prediction=[top1 for _, top1 in finals],
                ensemble=[outputs[ENSEMBLE] for outputs, _ in finals],
                branches=branches)


def predicted_output(work_dir, outputs, top1):
    """The output ``accuracy/top1`` stands for in a run (``outputs``, its
    final top-1 of every output; ``top1``, of the prediction), with its
    role (``branch3 (leader)``): the config copy's ``test_cfg.predict``
    where set, else the output whose final top-1 equals ``top1`` (a
    role's output first, then ``fused``, then ``ensemble``: the classes'
    defaults)."""
    cfg = run_config(work_dir)
    roles = output_roles(cfg) if cfg is not None else {}
    model = (cfg.get('model') or {}) if cfg is not None else {}
    predict = (model.get('test_cfg') or {}).get('predict')
    if predict is None:
        same = [k for k, v in outputs.items() if v == top1]
        for name in (*sorted(roles), 'fused', ENSEMBLE, *same):
            if name in same:
                predict = name
                break
    if predict is None:
        return 'top1'
    return f'{predict} ({roles[predict]})' if predict in roles else predict


def make_table(numbers):
    """The markdown table of :func:`main`'s numbers."""
    head = ['method', 'prediction (output)', 'top-1 of the prediction',
            'ensemble', 'branches (mean)', 'per seed (prediction)']
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    for name, row in numbers.items():
        per_seed = ', '.join(f'{v:.2f}' for v in row['prediction'])
        cells = [name, row['predicts'], summarise(row['prediction'])]
        cells += [summarise(row[k]) if row.get(k) else ''
                  for k in ('ensemble', 'branches')]
        lines.append('| ' + ' | '.join(cells + [per_seed]) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/methods')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--methods', nargs='+', choices=METHODS,
                        default=list(METHODS))
    args = parser.parse_args(argv)
    root = osp.abspath(args.work_dir)
    os.makedirs(root, exist_ok=True)
    configs = {m: METHOD_CONFIG[m] for m in args.methods}
    configs[SINGLE] = BASELINE_CONFIG

    def work_dir(method, seed):
        return osp.join(root, f'{method}_seed{seed}')

    train_all([Run(cfg, [], work_dir(m, s), s)
               for s in args.seeds for m, cfg in configs.items()], args.jobs)
    numbers = {}
    try:
        for method in args.methods:
            dirs = [work_dir(method, s) for s in args.seeds]
            label = METHOD_LABELS[method]
            numbers[label] = method_row(dirs)
        numbers['single ResNet-32'] = dict(
            predicts='the network',
            prediction=[final_prediction_top1(work_dir(SINGLE, s))
                        for s in args.seeds])
    except ResultsError as error:
        raise SystemExit(f'methods_table: {error}') from None
    table = make_table(numbers)
    print(table)
    with open(osp.join(root, 'results.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(root, 'results.json'), 'w') as f:
        json.dump(dict(seeds=args.seeds, configs=configs, top1=numbers), f,
                  indent=2)
    return numbers


if __name__ == '__main__':
    main()
