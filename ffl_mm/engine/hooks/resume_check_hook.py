# Copyright (c) ffl_mm contributors.
"""Say what a resumed run will do before it does it."""
import logging
from collections.abc import Mapping
from typing import List

from mmengine.hooks import Hook
from mmengine.logging import print_log

from ffl_mm.registry import HOOKS
from ...utils.private_api import (runner_has_loaded, runner_load_from,
                                  runner_resume, set_runner_load_from)

#: Scheduler config keys that describe the run, not the scheduler's class.
_NOT_SETTINGS = ('type', '_scope_', 'by_epoch', 'convert_to_iter_based',
                 'verbose')


def _plain(value):
    """Milestones as a sorted list (MMEngine keeps a ``Counter``)."""
    if isinstance(value, Mapping):
        return sorted(value.elements()) if hasattr(value, 'elements') \
            else dict(value)
    return list(value) if isinstance(value, (list, tuple)) else value


def resumed_setting_changes(runner) -> List[str]:
    """What the resumed optimizer and schedule hold that the config now says
    otherwise: the learning rate the schedule starts from (unless
    ``auto_scale_lr`` rescales it) and each scheduler's settings."""
    cfg = runner.cfg
    changes = []
    optimizer_cfg = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    auto_scale = (cfg.get('auto_scale_lr') or {}).get('enable', False)
    lr = optimizer_cfg.get('lr')
    groups = getattr(getattr(runner.optim_wrapper, 'optimizer', None),
                     'param_groups', [])
    resumed = {g.get('initial_lr', g.get('lr')) for g in groups}
    if lr is not None and resumed and not auto_scale and lr not in resumed:
        changes.append(f'optim_wrapper.optimizer.lr: the checkpoint\'s '
                       f'{sorted(resumed)[-1]:g}, the config {lr:g}')
    scheduler_cfgs = cfg.get('param_scheduler') or []
    if isinstance(scheduler_cfgs, Mapping):
        scheduler_cfgs = [scheduler_cfgs]
    schedulers = runner.param_schedulers or []
    if isinstance(schedulers, Mapping):  # one list per optimizer
        schedulers = [s for group in schedulers.values() for s in group]
    for i, (scheduler_cfg, scheduler) in enumerate(
            zip(scheduler_cfgs, schedulers)):
        for key, want in scheduler_cfg.items():
            if key in _NOT_SETTINGS or not hasattr(scheduler, key):
                continue
            have = _plain(getattr(scheduler, key))
            if _plain(want) != have:
                where = 'param_scheduler' + (
                    f'[{i}]' if len(scheduler_cfgs) > 1 else '')
                changes.append(f'{where}.{key}: the checkpoint\'s {have}, '
                               f'the config {_plain(want)}')
    return changes


@HOOKS.register_module()
class ResumeCheckHook(Hook):
    """Make a resumed run start from a checkpoint that loads and fits, and
    report, before its first step, what the resume restored that the config
    says otherwise, and a run that has nothing left to train.

    Before MMEngine resumes (``before_run``), with ``resume=True`` however
    it was set (``--resume`` of any tool, the config, ``--cfg-options``):
    without a ``load_from``, the newest checkpoint of the work dir that
    loads is chosen (MMEngine would take the one ``last_checkpoint`` names
    and fail on a damaged or diverged file); a checkpoint that does not fit
    the model (another number of branches, another method) stops the run
    with one message naming what differs (MMEngine fails in torch's
    parameter groups after a wall of key lists, or at the first step).

    MMEngine's ``Runner.train()`` resumes (``--resume``, ``resume=True``)
    with the checkpoint's optimizer and schedulers: a learning rate or
    milestones changed in the config since do not apply, and the log shows
    the config's values. A run resumed from its final checkpoint stops at
    once, exit code 0, with no line that says why. This hook says both,
    with the options that apply the config's values or train on.
    """

    priority = 'VERY_LOW'  # after the other before_train hooks

    def before_run(self, runner) -> None:
        if not runner_resume(runner) or runner_has_loaded(runner):
            return
        from ..resume import (ResumeError, resume_fit_message,
                              select_resume_checkpoint,
                              state_dict_differences)
        given = runner_load_from(runner)
        path, checkpoint = select_resume_checkpoint(
            runner.work_dir, given, where='resume')
        if path is None:
            return
        set_runner_load_from(runner, path)
        model = getattr(runner.model, 'module', runner.model)  # DDP
        differences = state_dict_differences(model.state_dict(),
                                             checkpoint['state_dict'])
        if differences:
            raise ResumeError(resume_fit_message(
                path, differences, type(model).__name__, where='resume'))

    def before_train(self, runner) -> None:
        if runner_resume(runner) and runner.iter > 0:
            changes = resumed_setting_changes(runner)
            if changes:
                print_log(
                    'Resumed with the checkpoint\'s optimizer and schedule, '
                    'which differ from the config: ' + '; '.join(changes) +
                    '. MMEngine restores them on resume. To train with the '
                    "config's values, start a new run from the checkpoint's "
                    'weights: --cfg-options load_from=CHECKPOINT (without '
                    '--resume), in another work dir.',
                    logger='current', level=logging.WARNING)
        by_epoch = hasattr(runner.train_loop, 'max_epochs')
        # epochs, not iterations: on a data set that shrank since the
        # checkpoint, max_iters (epochs x batches) is below the iteration
        # reached while epochs remain
        if (runner.epoch < runner.max_epochs if by_epoch else
                runner.iter < runner.max_iters):
            return
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
