# Copyright (c) ffl_mm contributors.
"""Say what a resumed run will do before it does it."""
import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log

from ffl_mm.registry import HOOKS


@HOOKS.register_module()
class ResumeCheckHook(Hook):
    """Report, before the first training step, a run that has nothing left
    to train.

    MMEngine's ``Runner.train()`` resumes (``--resume``, ``resume=True``),
    then runs the loop up to ``train_cfg.max_epochs`` / ``max_iters``. A run
    resumed from its final checkpoint stops at once, exit code 0, with no
    line in the log that says why; with this hook the log says where the
    run stands and which option trains on.
    """

    priority = 'VERY_LOW'  # after the other before_train hooks

    def before_train(self, runner) -> None:
        if runner.iter < runner.max_iters:
            return
        by_epoch = hasattr(runner.train_loop, 'max_epochs')
        where = (f'epoch {runner.epoch} of train_cfg.max_epochs='
                 f'{runner.max_epochs}' if by_epoch else
                 f'iteration {runner.iter} of train_cfg.max_iters='
                 f'{runner.max_iters}')
        key = 'max_epochs' if by_epoch else 'max_iters'
        print_log(
            f'Nothing left to train: the run starts at {where} (resumed '
            'from a finished run). Raise it to train on, e.g. --cfg-options '
            f'train_cfg.{key}=N with --resume, or start a new work_dir.',
            logger='current', level=logging.WARNING)
