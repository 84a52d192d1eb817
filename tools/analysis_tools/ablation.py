# Copyright (c) ffl_mm contributors.
"""A method's settings ablated on the digits data, against the single
network.

Trains a method's digits config through ``tools/train.py`` under each
setting of its study in :data:`STUDIES` and the single ResNet-32 of the
demo, for every seed, two runs at a time with one thread each, and writes
the final validation top-1 (mean ± std over the seeds) as a markdown table.

- ``dml``: temperature, update order, KD ramp-up (``bn_once``: the
  one-by-one update's extra forward passes leave BatchNorm statistics
  alone);
- ``clilr``: the public code's kept target graph and trunk-gradient
  rescaling, each switched off; the KD ramp by iteration.

Example::

    python tools/analysis_tools/ablation.py dml --seeds 0 1 2 3 4 \\
        --work-dir work_dirs/dml_ablation
"""
import argparse
import json
import os
import os.path as osp
import sys

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(TOOLS)
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(TOOLS, 'analysis_tools'))

from ffl_mm_analysis.results import final_top1, summarise  # noqa: E402
from ffl_mm_analysis.runs import Run, train_all  # noqa: E402

DML = 'configs/dml/dml_resnet32x2_digits.py'
CLILR = 'configs/clilr/clilr_resnet32x3_digits.py'
SINGLE = 'configs/baselines/resnet32_digits.py'
PAPER = ['model.distill_loss.temperature=1.0',
         'model.distill_loss.rampup=None', 'model.branch_update=one_by_one']
#: name -> --cfg-options over the shipped DML digits config
DML_SETTINGS = {
    'paper (T=1, one by one, no ramp)': PAPER,
    'T=3 (one by one, no ramp)': PAPER[1:] + [
        'model.distill_loss.temperature=3.0'],
    'together (T=1, no ramp)': PAPER[:2] + ['model.branch_update=together'],
    'BN statistics once (T=1, one by one, no ramp)': PAPER + [
        'bn_once'],
    'ramp 4 epochs (T=1, one by one): shipped before': [
        PAPER[0], PAPER[2], 'model.distill_loss.rampup=4'],
    'T=3, together, no ramp (public code\'s T and order)': [
        'model.distill_loss.temperature=3.0',
        'model.distill_loss.rampup=None', 'model.branch_update=together'],
}
DETACH, NO_RESCALE = ('model.distill_loss.detach_peers=True',
                      'model.grad_rescale=False')
#: name -> --cfg-options over the shipped CL-ILR digits config
CLILR_SETTINGS = {
    'public code (targets keep their graph, trunk gradient / 3)': [],
    'targets detached': [DETACH],
    'no rescaling': [NO_RESCALE],
    'targets detached, no rescaling': [DETACH, NO_RESCALE],
    # the digits ramp (4 epochs) steps w by epoch: 0.007, 0.08, 0.29, 0.73
    'public code, ramp by iteration (4 x 22)': [
        'model.distill_loss.by_epoch=False', 'model.distill_loss.rampup=88'],
}
#: study -> (config, settings, outputs reported besides the ensemble)
STUDIES = {
    'dml': (DML, DML_SETTINGS, ['branch0', 'branch1']),
    'clilr': (CLILR, CLILR_SETTINGS, ['branch0', 'branch1', 'branch2']),
}

# a DMLClassifier whose one-by-one re-forwards (no gradients) restore
# every buffer: BatchNorm statistics move once per network and iteration
BN_ONCE = '''
import torch
from ffl_mm.models.classifiers.dml import DMLClassifier
from ffl_mm.models.utils.recompute import buffers_kept
from ffl_mm.registry import MODELS


@MODELS.register_module()
class DMLBNOnce(DMLClassifier):

    def _branch_logits(self, i, inputs):
        if torch.is_grad_enabled():
            return super()._branch_logits(i, inputs)
        with buffers_kept(self.backbones[i]):
            return super()._branch_logits(i, inputs)
'''


def bn_once_config(work_dir):
    """A config of :data:`DML` whose model is :data:`BN_ONCE`'s class (a
    config's ``custom_imports`` act when the file is read, not from
    ``--cfg-options``), written into ``work_dir``; returns its path."""
    with open(osp.join(work_dir, 'dml_bn_once.py'), 'w') as f:
        f.write(BN_ONCE)
    config = osp.join(work_dir, 'dml_bn_once_config.py')
    with open(config, 'w') as f:
        f.write(f"_base_ = ['{osp.join(REPO, DML)}']\n"
                "custom_imports = dict(imports=['ffl_mm', "
                "'ffl_mm.engine.compat', 'dml_bn_once'], "
                "allow_failed_imports=False)\n"
                "model = dict(type='DMLBNOnce')\n")
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('study', choices=sorted(STUDIES))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--work-dir', help='default: work_dirs/<study>_'
                        'ablation')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--only', nargs='*', help='setting names to run')
    args = parser.parse_args(argv)
    config, all_settings, branches = STUDIES[args.study]
    args.work_dir = args.work_dir or f'work_dirs/{args.study}_ablation'
    work_root = osp.abspath(args.work_dir)
    os.makedirs(work_root, exist_ok=True)
    settings = {k: v for k, v in all_settings.items()
                if not args.only or k in args.only}
    tag = {name: f's{i}' for i, name in enumerate(all_settings)}
    jobs = [(SINGLE, [], 'single')]
    for name, opts in settings.items():
        cfg = config
        if 'bn_once' in opts:
            cfg, opts = bn_once_config(work_root), [
                o for o in opts if o != 'bn_once']
        jobs.append((cfg, opts, tag[name]))
    train_all([Run(cfg, opts, osp.join(work_root, f'{tag}_seed{s}'), s)
               for s in args.seeds for cfg, opts, tag in jobs],
              args.jobs, python_path=work_root)
    rows, numbers = [], {}
    names = ['single ResNet-32'] + list(settings)
    tags = ['single'] + [tag[name] for name in settings]
    for name, tag in zip(names, tags):
        finals = [final_top1(osp.join(args.work_dir, f'{tag}_seed{s}'))
                  for s in args.seeds]
        outputs = ['top1'] if tag == 'single' else ['ensemble', *branches]
        cells = []
        for out in outputs:
            values = [f[out] for f in finals]
            numbers.setdefault(name, {})[out] = values
            cells.append(summarise(values))
        cells += [''] * (1 + len(branches) - len(cells))
        per_seed = ', '.join(f'{v:.2f}' for v in numbers[name][outputs[0]])
        rows.append(f'| {name} | ' + ' | '.join(cells) + f' | {per_seed} |')
    header = ['setting', 'ensemble (single: top-1)',
              *(f'network {i}' for i in range(len(branches))),
              'per seed (ensemble)']
    table = '\n'.join(['| ' + ' | '.join(header) + ' |',
                       '|---' * len(header) + '|', *rows])
    print(table)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(numbers, f, indent=2)


if __name__ == '__main__':
    main()
