# Copyright (c) ffl_mm contributors.
"""Stop training at the first non-finite loss term, naming it."""
import math

import torch
from mmengine.hooks import Hook

from ffl_mm.registry import HOOKS

#: What to do after a run diverged (``--resume`` would restore the old
#: learning rate and schedule from the checkpoint, whatever the config says).
RESTART_ADVICE = ('or lower the learning rate and start from the last '
                  "checkpoint's weights with --cfg-options "
                  'load_from=CHECKPOINT optim_wrapper.optimizer.lr=LR '
                  '(--resume would restore the old learning rate and '
                  'schedule)')


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Check every loss term after each training iteration (MMEngine's
    ``CheckInvalidLossHook`` checks only the total and stops with a bare
    assertion).

    On a NaN or infinite term it raises :class:`NonFiniteLossError` naming
    every bad term, the epoch and the iteration, before the next checkpoint
    could store the damaged weights. Costs one device synchronisation per
    ``interval`` iterations (the logger synchronises anyway).

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'FiniteLossHook: interval must be an int >= 1, '
                             f'got {interval!r}.')
        self.interval = interval

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not outputs or not self.every_n_train_iters(runner,
                                                       self.interval):
            return
        terms = {k: v for k, v in outputs.items() if 'loss' in k}
        tensors = [torch.as_tensor(v).detach().float().reshape(-1)[:1]
                   for v in terms.values()]
        if not tensors or bool(torch.isfinite(torch.cat(tensors)).all()):
            return
        bad = []
        for name, value in terms.items():
            value = float(torch.as_tensor(value).float().reshape(-1)[0])
            if not math.isfinite(value):
                bad.append(f'{name}={value}')
        raise NonFiniteLossError(
            f'Non-finite loss at epoch {runner.epoch + 1}, iteration '
            f'{runner.iter + 1} (batch {batch_idx} of the epoch): '
            f'{", ".join(bad)}. Training stopped before saving these '
            f'weights. Check the data, {RESTART_ADVICE}, or use AMP loss '
            'scaling.')
