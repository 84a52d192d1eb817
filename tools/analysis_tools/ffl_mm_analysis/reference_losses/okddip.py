# Copyright (c) ffl_mm contributors.
"""OKDDip: the peer attention written out, each peer towards its target
and the leader towards the peers' mean."""
import torch

from ffl_mm.models.losses import DiversePeerKDLoss
from ..reference_step import branch_outputs, ce, kd, kd_scale
from . import register


def unsupported(model):
    loss = model.distill_loss
    if loss is not None and not isinstance(loss, DiversePeerKDLoss):
        return f'distillation by {type(loss).__name__}'
    return None


@register('OKDDipClassifier')
def okddip_loss(model, x, labels, kd_weight=None):
    _, _, pooled, logits = branch_outputs(model, x)
    loss = sum(ce(h, z, labels) for h, z in zip(model.heads, logits))
    loss_fn = model.distill_loss
    if loss_fn is None:
        return loss
    feats = [p[-1] if isinstance(p, (list, tuple)) else p
             for p in pooled[:-1]]
    attention = model.peer_attention
    f = torch.stack(feats, dim=1)
    a = (attention.query(f) @ attention.key(f).transpose(1, 2)).softmax(
        dim=-1)
    targets = (a @ torch.stack(logits[:-1], dim=1)).unbind(dim=1)
    T, detach = loss_fn.temperature, loss_fn.detach_targets
    peers = sum(kd(z, t, T, detach) for z, t in zip(logits[:-1], targets))
    leader = kd(logits[-1], torch.stack(logits[:-1]).mean(dim=0), T, detach)
    return loss + kd_scale(loss_fn, kd_weight) * (peers + leader)


okddip_loss.unsupported = unsupported
