# Copyright (c) ffl_mm contributors.
"""Knowledge-distillation loss on temperature-softened outputs."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ffl_mm.registry import MODELS
from ...utils.arg_checks import real_number


def kd_kl_div(student_logits: torch.Tensor,
              teacher_logits: torch.Tensor,
              temperature: float = 3.0,
              detach_teacher: bool = True) -> torch.Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch.

    The teacher is detached (only the student gets a gradient) unless
    ``detach_teacher=False``, where the gradient of the KL also reaches
    the teacher's logits (CL-ILR's and OKDDip's code). Computed in at least
    float32: half-precision logits (fp16/bf16 under AMP) go up to float32,
    float32 and float64 logits keep their precision.

    Args:
        student_logits (Tensor): ``(B, C)``.
        teacher_logits (Tensor): ``(B, C)``.
        temperature (float): T > 0.
        detach_teacher (bool): Keep the teacher fixed. Defaults to True.

    Returns:
        Tensor: A scalar.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f'KD needs student and teacher logits of one shape, got '
            f'{tuple(student_logits.shape)} and '
            f'{tuple(teacher_logits.shape)}.')
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    log_p_student = F.log_softmax(
        student_logits.to(dtype) / temperature, dim=1)
    log_p_teacher = F.log_softmax(
        (teacher_logits.detach() if detach_teacher else teacher_logits).to(
            dtype) / temperature, dim=1)
    kl = F.kl_div(
        log_p_student, log_p_teacher, reduction='batchmean', log_target=True)
    return kl * (temperature * temperature)


@MODELS.register_module()
class KDLoss(nn.Module):
    """``loss_weight · T² · KL(softmax(teacher/T) ‖ softmax(student/T))``.

    Hinton et al.'s distillation loss, averaged over the batch, with the
    teacher detached. The T² factor keeps the gradient scale independent
    of T.

    Args:
        temperature (float): T. Defaults to 3.0 (FFL's value).
        loss_weight (float): Multiplier. Defaults to 1.0.
    """

    def __init__(self, temperature: float = 3.0, loss_weight: float = 1.0):
        super().__init__()
        self.temperature = real_number('KDLoss', 'temperature', temperature,
                                       0, strict=True)
        self.loss_weight = real_number('KDLoss', 'loss_weight', loss_weight,
                                       0)

    def forward(self, student_logits: torch.Tensor,
                teacher_logits: torch.Tensor) -> torch.Tensor:
        """
        Args:
            student_logits (Tensor): ``(B, C)``.
            teacher_logits (Tensor): ``(B, C)``; gets no gradient.

        Returns:
            Tensor: A scalar.
        """
        return self.loss_weight * kd_kl_div(student_logits, teacher_logits,
                                            self.temperature)

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}, ' \
               f'loss_weight={self.loss_weight}'
