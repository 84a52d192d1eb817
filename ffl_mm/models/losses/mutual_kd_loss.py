# Copyright (c) ffl_mm contributors.
"""FFL's mutual distillation between the branches and the fused
classifier."""
from typing import Dict, Optional, Sequence

import torch

from ffl_mm.registry import MODELS
from .kd_loss import kd_kl_div
from .rampup import RampedKDLoss
from .teacher_kd_loss import teacher_terms


@MODELS.register_module()
class MutualKDLoss(RampedKDLoss):
    """The distillation terms of FFL.

    Each branch learns from the fused classifier, and the fused classifier
    learns from the ensemble (the mean of the branch logits)::

        loss_kd_branch{i} = w(e) · λ · KD(z_i ← z_f)
        loss_kd_fused     = w(e) · λ · KD(z_f ← mean_i z_i)

    with ``KD(s ← t) = T² · KL(softmax(t/T) ‖ softmax(s/T))`` (teachers
    detached, the terms summed over the branches) and the ramp-up
    ``w(e) = exp(-5 · (1 - min(e, R)/R)²)`` (FFL's, and the ONE authors'
    code's), which follows the training run (:class:`RampedKDLoss`). The
    weight is returned as ``kd_weight`` so that it shows in the log.

    Args:
        temperature (float): T. Defaults to 3.0 (FFL's and ONE's).
        loss_weight (float): λ. Defaults to 1.0.
        rampup (float, optional): R, in epochs (or iterations). Defaults
            to 80, the paper's value. 0 or None turns the ramp off (w = 1).
        by_epoch (bool): Ramp by epoch (default) or by iteration.
        distill_fused (bool): Must be True (FFL's fused term). False,
            the branches' terms alone, is ``TeacherKDLoss``: an error
            says so.
    """

    #: ``forward(branch_logits, teacher_logits)``: the teacher is needed
    needs_teacher = True
    target_keys = ()

    def __init__(self,
                 temperature: float = 3.0,
                 loss_weight: float = 1.0,
                 rampup: Optional[float] = 80,
                 by_epoch: bool = True,
                 distill_fused: bool = True):
        if distill_fused is not True:
            raise ValueError(
                f'MutualKDLoss: distill_fused={distill_fused!r}; the '
                "branches' terms without the fused one are "
                "type='TeacherKDLoss' (same temperature, loss_weight, "
                'rampup, by_epoch).')
        super().__init__(temperature, loss_weight, rampup, by_epoch)

    def forward(self,
                branch_logits: Sequence[torch.Tensor],
                teacher_logits: torch.Tensor,
                progress: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            branch_logits (Sequence[Tensor]): N tensors ``(B, C)``.
            teacher_logits (Tensor): ``(B, C)``, the fused classifier's
                logits.
            progress (float, optional): Epoch (or iteration) for the ramp;
                read from the MessageHub when None.

        Returns:
            dict[str, Tensor]: ``loss_kd_branch{i}`` for each branch,
            ``loss_kd_fused`` and ``kd_weight`` (logged, not a loss).
        """
        weight = self.current_weight(progress) * self.loss_weight
        losses = teacher_terms(branch_logits, teacher_logits,
                               self.temperature, weight)
        ensemble = torch.stack(tuple(branch_logits)).mean(dim=0)
        losses['loss_kd_fused'] = weight * kd_kl_div(
            teacher_logits, ensemble, self.temperature)
        losses['kd_weight'] = losses.pop('kd_weight')  # logged last
        return losses
