# Copyright (c) ffl_mm contributors.
"""Ramp-up schedules for the distillation weight."""
import math
from typing import Optional

import torch.nn as nn
from mmengine.logging import MessageHub

from ...utils.arg_checks import real_number


def sigmoid_rampup(current: float, length: Optional[float]) -> float:
    """``exp(-5 · (1 - min(current, length) / length)²)``.

    The "sigmoid-shaped" ramp of Laine and Aila (2017) that FFL uses for
    its KD weight: exp(-5) ≈ 0.0067 at 0, rising to 1 at ``length``.

    Args:
        current (float): The epoch (or iteration), 0-based.
        length (float, optional): Ramp length; 0 or None means no ramp
            (always 1).

    Returns:
        float: The weight in (0, 1].
    """
    if not length:
        return 1.0
    if length < 0:
        raise ValueError(f'ramp-up length must be >= 0, got {length!r}.')
    phase = 1.0 - min(max(float(current), 0.0), float(length)) / length
    return math.exp(-5.0 * phase * phase)


class RampedKDLoss(nn.Module):
    """Base of the distillation losses: temperature, weight and a ramp-up
    that follows the training run.

    The ramp reads MMEngine's ``MessageHub``: the ``epoch`` that
    ``RuntimeInfoHook`` records before every training epoch (0-based, and
    restored on ``--resume``), or the ``iter`` with ``by_epoch=False``.
    Outside a Runner, with no such information, the ramp is taken as
    finished (w = 1).

    Args:
        temperature (float): T > 0.
        loss_weight (float): λ >= 0.
        rampup (float, optional): R >= 0, in epochs (or iterations); 0 or
            None: no ramp (w = 1).
        by_epoch (bool): Ramp by epoch or by iteration.
    """

    # Each subclass declares ``needs_teacher`` (and ``target_keys`` where
    # it takes training targets): the contract a classifier checks at
    # build time (models/classifiers/distill_contract.py).

    def __init__(self, temperature: float, loss_weight: float,
                 rampup: Optional[float], by_epoch: bool):
        super().__init__()
        name = type(self).__name__
        self.temperature = real_number(name, 'temperature', temperature, 0,
                                       strict=True)
        # a negative weight would train the models apart, silently
        self.loss_weight = real_number(name, 'loss_weight', loss_weight, 0)
        if rampup is not None:
            real_number(name, 'rampup', rampup, 0)
        self.rampup = rampup
        self.by_epoch = by_epoch

    def current_weight(self, progress: Optional[float] = None) -> float:
        """w at ``progress`` (epoch or iteration), read from the
        MessageHub when not given."""
        if progress is None:
            key = 'epoch' if self.by_epoch else 'iter'
            progress = MessageHub.get_current_instance().get_info(key)
            if progress is None:
                return 1.0
        return sigmoid_rampup(progress, self.rampup)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, loss_weight='
                f'{self.loss_weight}, rampup={self.rampup}, '
                f'by_epoch={self.by_epoch}')
