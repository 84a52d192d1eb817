# Copyright (c) ffl_mm contributors.
"""KDCL's teachers: soft targets made from the students' logits and the
labels (Guo et al., CVPR 2020)."""
from typing import Sequence

import torch
import torch.nn.functional as F


def _stacked(branch_logits: Sequence[torch.Tensor],
             labels: torch.Tensor) -> torch.Tensor:
    logits = torch.stack(tuple(branch_logits))
    if labels.shape != logits.shape[1:2]:
        raise ValueError(
            f'KDCL teachers need one class index per image: labels of shape '
            f'{tuple(labels.shape)} for logits {tuple(logits.shape[1:])}.')
    return logits


def min_logit_teacher(branch_logits: Sequence[torch.Tensor],
                      labels: torch.Tensor) -> torch.Tensor:
    """KDCL-MinLogit: every student's logits shifted so that its logit of
    the true class is 0, then the smallest of each class over the
    students::

        t_c = min_i (z_{i,c} - z_{i,y})

    so ``t_y = 0`` and every other class keeps the students' lowest margin
    to the true class.

    Args:
        branch_logits (Sequence[Tensor]): N logits ``(B, C)``.
        labels (Tensor): ``(B, )`` class indices.

    Returns:
        Tensor: ``(B, C)``.
    """
    logits = _stacked(branch_logits, labels)
    index = labels.view(1, -1, 1).expand(logits.size(0), -1, 1)
    return (logits - logits.gather(2, index)).min(dim=0).values


def naive_teacher(branch_logits: Sequence[torch.Tensor],
                  labels: torch.Tensor) -> torch.Tensor:
    """KDCL-Naive: for each image, the logits of the student with the
    lowest cross-entropy on it, ``t = z_k`` with ``k = argmin_i
    CE(z_i, y)`` (the first such student on a tie).

    Args:
        branch_logits (Sequence[Tensor]): N logits ``(B, C)``.
        labels (Tensor): ``(B, )`` class indices.

    Returns:
        Tensor: ``(B, C)``.
    """
    logits = _stacked(branch_logits, labels)
    n, b, c = logits.shape
    ce = F.cross_entropy(
        logits.reshape(n * b, c), labels.repeat(n),
        reduction='none').view(n, b)
    best = ce.argmin(dim=0)
    return logits[best, torch.arange(b, device=logits.device)]


#: KDCL's teachers by the name ``KDCLClassifier(teacher=...)`` takes
TEACHERS = {'min_logit': min_logit_teacher, 'naive': naive_teacher}
