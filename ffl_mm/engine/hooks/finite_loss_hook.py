# Copyright (c) ffl_mm contributors.
"""Stop training at the first non-finite loss term, and evaluation at the
first non-finite prediction, naming it."""
import math
from typing import List, Optional, Tuple

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


class NonFiniteOutputError(RuntimeError):
    """The model predicted NaN or infinite scores in validation or test."""


def first_non_finite_output(outputs) -> Optional[Tuple[int, List[str]]]:
    """``(sample index, fields)`` of the first prediction of ``outputs`` (a
    list of data samples) with NaN or infinite floating tensors, the fields
    sorted by name; None when every one is finite."""
    fields = []
    for i, sample in enumerate(outputs or []):
        items = sample.items() if hasattr(sample, 'items') else []
        for field, value in sorted(items, key=lambda item: item[0]):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                fields.append((i, field, value))
    if not fields or bool(torch.isfinite(torch.cat(
            [v.detach().reshape(-1) for _, _, v in fields])).all()):
        return None
    bad = [(i, field) for i, field, value in fields
           if not bool(torch.isfinite(value).all())]
    first = bad[0][0]
    return first, [field for i, field in bad if i == first]


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Check every loss term after each training iteration (MMEngine's
    ``CheckInvalidLossHook`` checks only the total and stops with a bare
    assertion).

    On a NaN or infinite term it raises :class:`NonFiniteLossError` naming
    every bad term, the epoch and the iteration, before the next checkpoint
    could store the damaged weights. Costs one device synchronisation per
    ``interval`` iterations (the logger synchronises anyway).

    In validation and test, a NaN or infinite prediction (``pred_score``,
    every branch's and the fused scores) raises
    :class:`NonFiniteOutputError`: the metrics of such weights would be
    printed as if they meant something, and ``tools/test.py`` would exit 0.

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

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        self._check_outputs('validation', batch_idx, outputs)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs=None) -> None:
        self._check_outputs('test', batch_idx, outputs)

    @staticmethod
    def _check_outputs(stage: str, batch_idx: int, outputs) -> None:
        found = first_non_finite_output(outputs)
        if found is None:
            return
        sample, fields = found
        raise NonFiniteOutputError(
            f'Non-finite {", ".join(fields)} in {stage} batch {batch_idx} '
            f'(sample {sample} of the batch): the model predicts NaN or inf, '
            'so no metric of these weights would mean anything. The '
            'weights are probably those of a diverged run: evaluate an '
            'earlier checkpoint.')
