# Copyright (c) ffl_mm contributors.
"""Train a model: MMPretrain's own ``tools/train.py`` (its argument parsing
and config defaults, loaded from the installed mmpretrain), plus what ffl_mm
adds, each a call into :mod:`ffl_mm.engine`:

* ``ffl_mm`` and ``ffl_mm.engine.compat`` are imported (components, safe
  checkpoint reading, atomic checkpoint writing);
* data loaders with ``num_workers=0`` get ``persistent_workers=False``;
* ffl_mm types that the Runner would look up in another registry scope
  (an inherited ``_scope_='mmpretrain'``) and data paths are checked before
  anything is built;
* ``--resume`` without a path takes the newest checkpoint that loads (and
  holds no NaN/inf weights); a checkpoint of another model stops the run
  before anything is built or written;
* a start that fails before the first save puts back the work dir's copy
  of the config;
* ``--launcher pytorch`` without CUDA starts a gloo process group;
* on a machine without CUDA, glibc keeps freed memory in the process (the
  log says so; ``FFL_MM_NO_MALLOC_TUNING=1`` turns it off);
* ``--amp`` without CUDA is an error, and the process group is closed at
  the end;
* ``compile=True`` (or a dict of ``torch.compile`` arguments) compiles the
  model's computation from images to logits, not MMEngine's whole
  ``train_step`` (:mod:`ffl_mm.engine.compile`).

Examples::

    python tools/train.py configs/ffl/ffl_resnet32x2_digits.py
    python tools/train.py CONFIG --resume            # latest in work dir
    tools/dist_train.sh CONFIG 8                      # torchrun, 8 processes
"""
import logging
import os.path as osp
import sys

# Usable from a source checkout without installing the package.
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from ffl_mm.registry import RUNNERS  # noqa: E402

import ffl_mm  # noqa: F401,E402
import ffl_mm.engine.compat  # noqa: F401,E402
from ffl_mm.engine import resolve_auto_resume  # noqa: E402
from ffl_mm.engine.compile import take_over_compile  # noqa: E402
from ffl_mm.tools_support.config_scopes import check_config_scopes  # noqa: E402
from ffl_mm.tools_support.config_values import check_config_values  # noqa: E402
from ffl_mm.tools_support.cpu_allocator import tune_cpu_allocator  # noqa: E402
from ffl_mm.tools_support.data_checks import check_data_paths  # noqa: E402
from ffl_mm.tools_support.distributed import (close_distributed,  # noqa: E402
                                       setup_launcher)
from ffl_mm.tools_support.mmpretrain_tools import (mmpretrain_tool,  # noqa: E402
                                            parse_tool_args,
                                            sanitize_dataloaders)
from ffl_mm.engine.work_dir import (config_copy_kept_on_failure,  # noqa: E402
                                    lock_work_dir, unlock_work_dirs)

MMPRETRAIN_TRAIN = mmpretrain_tool('train')


def parse_args(argv=None):
    return parse_tool_args(MMPRETRAIN_TRAIN, argv, 'tools/train.py')


def merge_args(cfg, args):
    """MMPretrain's ``merge_args``, then ffl_mm's data-loader fix."""
    if args.amp and not torch.cuda.is_available():
        raise SystemExit('--amp needs a CUDA device (MMEngine\'s '
                         'AmpOptimWrapper); this machine has none.')
    cfg = MMPRETRAIN_TRAIN.merge_args(cfg, args)
    sanitize_dataloaders(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    check_config_scopes(cfg)
    check_config_values(cfg)
    check_data_paths(cfg)
    taken_over = lock_work_dir(cfg.work_dir)
    try:
        if taken_over:
            print_log(taken_over, logger='current', level=logging.WARNING)
        resolve_auto_resume(cfg, args.resume)
        setup_launcher(cfg, args.launcher)
        if not torch.cuda.is_available() and tune_cpu_allocator():
            print_log('CPU training: glibc keeps freed memory in the '
                      'process (ffl_mm.tools_support.cpu_allocator; '
                      'FFL_MM_NO_MALLOC_TUNING=1 turns it off).',
                      logger='current')
        with config_copy_kept_on_failure(cfg):
            if 'runner_type' in cfg:
                runner = RUNNERS.build(cfg)
            else:
                runner = Runner.from_cfg(cfg)
            take_over_compile(runner)
            runner.train()
            # the Runner's DDP wrapper holds the process group: freed
            # before the group is destroyed (close_distributed)
            del runner
        close_distributed()
    finally:
        unlock_work_dirs()


if __name__ == '__main__':
    main()
