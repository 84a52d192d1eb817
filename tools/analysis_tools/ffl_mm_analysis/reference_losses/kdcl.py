# Copyright (c) ffl_mm contributors.
"""KDCL: each student on its own view, the MinLogit (or Naive) teacher
written out, each student towards it."""
import torch
import torch.nn.functional as F

from ffl_mm.models.losses import TeacherKDLoss
from ..reference_step import ce, kd, kd_scale, linear, network_maps
from . import register


def unsupported(model):
    loss = model.distill_loss
    if loss is not None and not isinstance(loss, TeacherKDLoss):
        return f'distillation by {type(loss).__name__}'
    return None


def _teacher(name, logits, labels):
    z = torch.stack(logits)  # (N, B, C)
    if name == 'min_logit':
        own = z.gather(2, labels.view(1, -1, 1).expand(len(logits), -1, 1))
        return (z - own).min(dim=0).values
    ce_each = torch.stack([F.cross_entropy(zi, labels, reduction='none')
                           for zi in logits])
    return z[ce_each.argmin(dim=0), torch.arange(labels.numel())]


@register('KDCLClassifier')
def kdcl_loss(model, x, labels, kd_weight=None):
    n = model.num_branches
    views = x.unbind(dim=1) if x.dim() == 5 else [x] * n
    logits = [linear(model.heads[i],
                     model.necks[i](network_maps(model, i, views[i])))
              for i in range(n)]
    loss = sum(ce(h, z, labels) for h, z in zip(model.heads, logits))
    loss_fn = model.distill_loss
    if loss_fn is None:
        return loss
    teacher = _teacher(model.teacher, logits, labels)
    return loss + kd_scale(loss_fn, kd_weight) * sum(
        kd(z, teacher, loss_fn.temperature) for z in logits)


kdcl_loss.unsupported = unsupported
