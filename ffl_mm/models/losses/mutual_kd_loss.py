# Copyright (c) ffl_mm contributors.
"""FFL's mutual distillation between the branches and the fused
classifier."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.logging import MessageHub

from ffl_mm.registry import MODELS
from ..utils.arg_checks import real_number
from .kd_loss import kd_kl_div
from .rampup import sigmoid_rampup


@MODELS.register_module()
class MutualKDLoss(nn.Module):
    """The distillation terms of FFL.

    Each branch learns from the fused classifier, and the fused classifier
    learns from the ensemble (the mean of the branch logits)::

        loss_kd_branch{i} = w(e) · λ · KD(z_i ← z_f)
        loss_kd_fused     = w(e) · λ · KD(z_f ← mean_i z_i)

    with ``KD(s ← t) = T² · KL(softmax(t/T) ‖ softmax(s/T))`` (teachers
    detached) and the ramp-up ``w(e) = exp(-5 · (1 - min(e, R)/R)²)``.

    The ramp follows the training run through MMEngine's ``MessageHub``:
    the ``epoch`` that ``RuntimeInfoHook`` records before every training
    epoch (0-based, and restored on ``--resume``), or the ``iter`` with
    ``by_epoch=False`` (for ``IterBasedTrainLoop``, with ``rampup`` in
    iterations). Outside a Runner, with no such information, the ramp is
    taken as finished (w = 1). The weight is returned as ``kd_weight``
    so that it shows in the training log.

    Args:
        temperature (float): T. Defaults to 3.0.
        loss_weight (float): λ. Defaults to 1.0.
        rampup (float, optional): R, in epochs (or iterations). Defaults
            to 80, the paper's value. 0 or None turns the ramp off (w = 1).
        by_epoch (bool): Ramp by epoch (default) or by iteration.
    """

    def __init__(self,
                 temperature: float = 3.0,
                 loss_weight: float = 1.0,
                 rampup: Optional[float] = 80,
                 by_epoch: bool = True):
        super().__init__()
        self.temperature = real_number('MutualKDLoss', 'temperature',
                                       temperature, 0, strict=True)
        # a negative weight would train the models apart, silently
        self.loss_weight = real_number('MutualKDLoss', 'loss_weight',
                                       loss_weight, 0)
        if rampup is not None:
            real_number('MutualKDLoss', 'rampup', rampup, 0)
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

    def forward(self,
                branch_logits: Sequence[torch.Tensor],
                fused_logits: torch.Tensor,
                progress: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            branch_logits (Sequence[Tensor]): N tensors ``(B, C)``.
            fused_logits (Tensor): ``(B, C)``.
            progress (float, optional): Epoch (or iteration) for the ramp;
                read from the MessageHub when None.

        Returns:
            dict[str, Tensor]: ``loss_kd_branch{i}`` for each branch,
            ``loss_kd_fused`` and ``kd_weight`` (logged, not a loss).
        """
        weight = self.current_weight(progress) * self.loss_weight
        T = self.temperature
        losses = {}
        for i, logits in enumerate(branch_logits):
            losses[f'loss_kd_branch{i}'] = weight * kd_kl_div(
                logits, fused_logits, T)
        ensemble = torch.stack(tuple(branch_logits)).mean(dim=0)
        losses['loss_kd_fused'] = weight * kd_kl_div(fused_logits, ensemble,
                                                     T)
        losses['kd_weight'] = fused_logits.new_tensor(
            weight, dtype=torch.float32)
        return losses

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, loss_weight='
                f'{self.loss_weight}, rampup={self.rampup}, '
                f'by_epoch={self.by_epoch}')
