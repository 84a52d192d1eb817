# Copyright (c) ffl_mm contributors.
"""ONE: the gate reads the trunk's map; the gated ensemble, trained by its
cross-entropy, teaches the branches."""
import torch

from ffl_mm.models.losses import TeacherKDLoss
from ..reference_step import (branch_outputs, ce, head_unsupported, kd,
                              kd_scale)
from . import register


def unsupported(model):
    head = model.ensemble_head
    if type(head).__name__ != 'GatedEnsembleHead' or \
            head.gate_input != 'trunk':
        return f'an ensemble head ({type(head).__name__})'
    loss = model.distill_loss
    if loss is not None and not isinstance(loss, TeacherKDLoss):
        return f'distillation by {type(loss).__name__}'
    return head_unsupported(head, 'the ensemble head', linear=False)


@register('ONEClassifier')
def one_loss(model, x, labels, kd_weight=None):
    _, trunk, _, logits = branch_outputs(model, x)
    loss = sum(ce(h, z, labels) for h, z in zip(model.heads, logits))
    head = model.ensemble_head
    gate = head.gate(trunk)
    teacher = (gate.unsqueeze(-1) * torch.stack(logits, dim=1)).sum(1)
    loss = loss + ce(head, teacher, labels)
    loss_fn = model.distill_loss
    if loss_fn is None:
        return loss
    return loss + kd_scale(loss_fn, kd_weight) * sum(
        kd(z, teacher, loss_fn.temperature) for z in logits)


one_loss.unsupported = unsupported
