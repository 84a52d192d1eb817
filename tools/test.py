# Copyright (c) ffl_mm contributors.
"""Evaluate a checkpoint: MMPretrain's ``tools/test.py`` interface, with
ffl_mm loaded, CPU distributed runs supported and a strict weight check.

Unlike a plain ``load_from``, the checkpoint must match the model exactly:
missing or unexpected keys are an error, so a checkpoint of another
architecture never evaluates random weights.

Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import mmengine  # noqa: E402
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.registry import RUNNERS  # noqa: E402

import ffl_mm  # noqa: F401,E402  registers components, safe checkpoints
from ffl_mm.apis import (close_distributed, sanitize_dataloaders,  # noqa: E402
                         setup_launcher)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the evaluation log')
    parser.add_argument('--out', help='the file to output results')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out saves: the predictions of every sample ("pred", '
        'the default) or only the metrics')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument(
        '--show-dir',
        help='directory where the visualised predictions are saved '
        '(relative to the work dir\'s timestamp folder)')
    parser.add_argument(
        '--show', action='store_true', help='show the predictions')
    parser.add_argument(
        '--interval', type=int, default=1, help='visualise every N samples')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='display time (s)')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='turn off pin_memory in all data loaders')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation with the config\'s `tta_model` and '
        '`tta_pipeline`')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the command-line options to the config."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    # Loaded strictly in main(), not through the Runner's lenient load_from.
    cfg.load_from = None
    cfg.resume = False

    if args.show or args.show_dir:
        vis = cfg.default_hooks.get('visualization', ConfigDict(
            type='VisualizationHook'))
        vis.update(
            enable=True,
            interval=args.interval,
            show=args.show,
            wait_time=args.wait_time,
            out_dir=args.show_dir)
        cfg.default_hooks.visualization = vis

    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise SystemExit('--tta needs `tta_model` and `tta_pipeline` in '
                             'the config.')
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline

    if args.out is not None and args.out_item in (None, 'pred'):
        evaluators = cfg.test_evaluator
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        cfg.test_evaluator = [
            *evaluators,
            dict(type='DumpResults', out_file_path=args.out)
        ]

    sanitize_dataloaders(cfg, pin_memory=not args.no_pin_memory)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
        sanitize_dataloaders(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.out is not None:
        suffixes = ('.json', '.yaml', '.pkl') if args.out_item == 'metrics' \
            else ('.pkl', '.pickle')
        if not args.out.endswith(suffixes):
            raise SystemExit(f'--out {args.out}: --out-item '
                             f'{args.out_item or "pred"} is written to a '
                             f'{"/".join(suffixes)} file.')
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    setup_launcher(cfg, args.launcher)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
    metrics = runner.test()
    if args.out and args.out_item == 'metrics' and is_main_process():
        mmengine.dump(metrics, args.out)
    close_distributed()
    return metrics


if __name__ == '__main__':
    main()
