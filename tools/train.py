# Copyright (c) ffl_mm contributors.
"""Train a model: MMPretrain's ``tools/train.py`` interface, with ffl_mm
loaded and CPU distributed runs supported.

Examples::

    python tools/train.py configs/ffl/ffl_resnet32x2_digits.py
    python tools/train.py CONFIG --resume            # latest in work dir
    python tools/train.py CONFIG --resume PATH.pth
    tools/dist_train.sh CONFIG 8                      # torchrun, 8 processes
"""
import argparse
import logging
import os
import os.path as osp
import sys

# Usable from a source checkout without installing the package.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.registry import RUNNERS  # noqa: E402

import ffl_mm  # noqa: F401,E402  registers components, safe checkpoints
from ffl_mm.apis import (check_data_paths, close_distributed,  # noqa: E402
                         sanitize_dataloaders, setup_launcher,
                         tune_cpu_allocator)
from ffl_mm.engine import (find_resumable_checkpoint,  # noqa: E402
                           latest_checkpoint_pointer)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a classifier')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, without a path, from '
        'the latest checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training (needs CUDA)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual total batch size')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='turn off pin_memory in all data loaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='turn off persistent_workers in all data loaders')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value, e.g. '
        'train_cfg.max_epochs=2 model.num_branches=3')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the command-line options to the config."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA device (MMEngine\'s '
                             'AmpOptimWrapper); this machine has none.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    sanitize_dataloaders(
        cfg,
        pin_memory=not args.no_pin_memory,
        persistent_workers=not args.no_persistent_workers)

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
        sanitize_dataloaders(cfg)
    return cfg


def resolve_auto_resume(cfg, args):
    """``--resume`` without a path: the newest checkpoint that loads.

    MMEngine would take the one named in ``last_checkpoint`` and fail if it
    is damaged; a truncated or unreadable newest file is skipped, with a
    warning, for the previous good one.
    """
    if args.resume != 'auto' or not osp.isdir(cfg.work_dir):
        return
    path, skipped = find_resumable_checkpoint(cfg.work_dir)
    for bad, reason in skipped:
        print_log(f'--resume: skipping {bad}: {reason}', logger='current',
                  level=logging.WARNING)
    if path is None:
        if skipped:
            raise SystemExit(
                f'--resume: no readable checkpoint in {cfg.work_dir} (every '
                'one above is damaged); drop --resume to start from scratch '
                'or give --resume PATH.')
        return  # no checkpoint yet: MMEngine starts from scratch
    if skipped or path != latest_checkpoint_pointer(cfg.work_dir):
        # MMEngine would resume from last_checkpoint (damaged or missing)
        print_log(f'--resume: resuming from {path}, the newest readable '
                  'checkpoint.', logger='current', level=logging.WARNING)
        cfg.load_from = path


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    check_data_paths(cfg)
    resolve_auto_resume(cfg, args)
    setup_launcher(cfg, args.launcher)
    import torch
    if not torch.cuda.is_available() and tune_cpu_allocator():
        print_log('CPU training: glibc keeps freed memory in the process '
                  '(ffl_mm.apis.tune_cpu_allocator; FFL_MM_NO_MALLOC_TUNING=1 '
                  'turns it off).', logger='current')
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()
    close_distributed()


if __name__ == '__main__':
    main()
