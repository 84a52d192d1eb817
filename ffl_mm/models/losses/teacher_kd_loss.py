# Copyright (c) ffl_mm contributors.
"""Every branch distilled from one teacher's logits (ONE's gated
ensemble, KDCL's made teacher)."""
from typing import Dict, Optional, Sequence

import torch

from ffl_mm.registry import MODELS
from .kd_loss import kd_kl_div
from .rampup import RampedKDLoss


def teacher_terms(branch_logits: Sequence[torch.Tensor],
                  teacher_logits: torch.Tensor, temperature: float,
                  weight: float) -> Dict[str, torch.Tensor]:
    """``loss_kd_branch{i} = weight · T² KL(softmax(t/T) ‖ softmax(z_i/T))``
    for each branch (the teacher detached) and ``kd_weight``, the weight
    as a float32 scalar for the log."""
    losses = {
        f'loss_kd_branch{i}': weight * kd_kl_div(z, teacher_logits,
                                                 temperature)
        for i, z in enumerate(branch_logits)
    }
    losses['kd_weight'] = teacher_logits.new_tensor(
        weight, dtype=torch.float32)
    return losses


@MODELS.register_module()
class TeacherKDLoss(RampedKDLoss):
    """Each branch learns from the teacher, the teacher detached::

        loss_kd_branch{i} = w(e) · λ · T² KL(softmax(z_t/T) ‖ softmax(z_i/T))

    ONE's terms (the teacher: its gated ensemble) and KDCL's (the teacher
    made from the students and the labels). FFL's, where the fused
    teacher also learns from the branches, are :class:`MutualKDLoss`.

    Args:
        temperature (float): T. Defaults to 3.0 (ONE's).
        loss_weight (float): λ. Defaults to 1.0.
        rampup (float, optional): R of the ramp-up
            ``w(e) = exp(-5 (1 - min(e, R)/R)²)``, in epochs (or
            iterations). Defaults to 80 (the ONE authors' code); 0 or None:
            no ramp.
        by_epoch (bool): Ramp by epoch (default) or by iteration.
    """

    #: ``forward(branch_logits, teacher_logits)``: the teacher is needed
    needs_teacher = True
    target_keys = ()

    def __init__(self,
                 temperature: float = 3.0,
                 loss_weight: float = 1.0,
                 rampup: Optional[float] = 80,
                 by_epoch: bool = True):
        super().__init__(temperature, loss_weight, rampup, by_epoch)

    def forward(self,
                branch_logits: Sequence[torch.Tensor],
                teacher_logits: torch.Tensor,
                progress: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            branch_logits (Sequence[Tensor]): N tensors ``(B, C)``.
            teacher_logits (Tensor): ``(B, C)``; gets no gradient.
            progress (float, optional): Epoch (or iteration) for the ramp;
                read from the MessageHub when None.

        Returns:
            dict[str, Tensor]: ``loss_kd_branch{i}`` for each branch and
            ``kd_weight`` (logged, not a loss).
        """
        return teacher_terms(branch_logits, teacher_logits, self.temperature,
                             self.current_weight(progress) * self.loss_weight)
