# Copyright (c) ffl_mm contributors.
"""Evaluate a checkpoint: MMPretrain's own ``tools/test.py`` (its argument
parsing and config defaults, ``--tta`` included, loaded from the installed
mmpretrain), plus what ffl_mm adds, each a call into :mod:`ffl_mm.engine`:

* ``ffl_mm`` and ``ffl_mm.engine.compat`` are imported;
* the checkpoint must match the model exactly: missing or unexpected keys
  are an error, so a checkpoint of another architecture never evaluates
  random weights (with ``--tta``, the weights go into the wrapped model);
* data loaders with ``num_workers=0`` get ``persistent_workers=False``;
* ffl_mm types in another registry scope and data paths are checked
  before anything is built; with ffl_mm's configs
  (``DatasetCheckHook``, ``FiniteLossHook``) labels the heads cannot
  predict and NaN/inf predictions are errors, not a metric and exit code 0;
* ``--launcher pytorch`` without CUDA starts a gloo process group;
* ``--out`` is checked before the run, written by rank 0 only, and the
  process group is closed at the end;
* ``compile=True`` (or a dict of ``torch.compile`` arguments) compiles the
  model's computation from images to logits (MMEngine compiles nothing
  for testing; :mod:`ffl_mm.engine.compile`).

Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --tta
    tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import mmengine  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.evaluator import DumpResults  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from ffl_mm.registry import RUNNERS  # noqa: E402

import ffl_mm  # noqa: F401,E402
import ffl_mm.engine.compat  # noqa: F401,E402
from ffl_mm.engine.compile import take_over_compile  # noqa: E402
from ffl_mm.tools_support.config_scopes import check_config_scopes  # noqa: E402
from ffl_mm.tools_support.config_values import check_config_values  # noqa: E402
from ffl_mm.tools_support.data_checks import check_data_paths  # noqa: E402
from ffl_mm.tools_support.distributed import (close_distributed,  # noqa: E402
                                       setup_launcher)
from ffl_mm.tools_support.mmpretrain_tools import (mmpretrain_tool,  # noqa: E402
                                            parse_tool_args,
                                            sanitize_dataloaders)

MMPRETRAIN_TEST = mmpretrain_tool('test')


def parse_args(argv=None):
    return parse_tool_args(MMPRETRAIN_TEST, argv, 'tools/test.py')


def merge_args(cfg, args):
    """MMPretrain's ``merge_args``; the checkpoint is then loaded strictly
    by ``Runner.load_checkpoint``, not by the Runner's lenient
    ``load_from``."""
    cfg = MMPRETRAIN_TEST.merge_args(cfg, args)
    sanitize_dataloaders(cfg)
    cfg.load_from = None
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.out is None and args.out_item is not None:
        raise SystemExit('--out-item needs --out FILE.')
    if args.out is not None:
        suffixes = ('.json', '.yaml', '.pkl') if args.out_item == 'metrics' \
            else ('.pkl', '.pickle')
        if not args.out.endswith(suffixes):
            raise SystemExit(f'--out {args.out}: --out-item '
                             f'{args.out_item or "pred"} is written to a '
                             f'{"/".join(suffixes)} file.')
    cfg = merge_args(Config.fromfile(args.config), args)
    check_config_scopes(cfg)
    check_config_values(cfg)
    check_data_paths(cfg)
    setup_launcher(cfg, args.launcher)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    # MMEngine unwraps DDP and TTA models for the weights
    runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
    take_over_compile(runner)
    if args.out and args.out_item in ('pred', None):
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if args.out and args.out_item == 'metrics' and is_main_process():
        mmengine.dump(metrics, args.out)
    del runner  # its DDP wrapper holds the process group (close_distributed)
    close_distributed()
    return metrics


if __name__ == '__main__':
    main()
