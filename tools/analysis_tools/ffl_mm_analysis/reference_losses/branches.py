# Copyright (c) ffl_mm contributors.
"""The branches with cross-entropy, and DML's peers (``PeerKDLoss``):
the base class (DML with the networks updated together) and CL-ILR (its
trunk's gradient rescaled by a hook, as a script would write it)."""
import torch

from ffl_mm.models.losses import PeerKDLoss
from ..reference_step import branch_outputs, ce, kd, kd_scale
from . import register


def peer_kd(loss, i, logits):
    """Network i's DML (CL-ILR) term against its peers, unweighted."""
    T, detach = loss.temperature, loss.detach_peers
    peers = [z for j, z in enumerate(logits) if j != i]
    if loss.peer_target == 'each':
        return sum(kd(logits[i], z, T, detach) for z in peers) / len(peers)
    return kd(logits[i], torch.stack(peers).mean(dim=0), T, detach)


def unsupported(model):
    loss = model.distill_loss
    if loss is not None and not isinstance(loss, PeerKDLoss):
        return f'distillation by {type(loss).__name__}'
    return None


@register('MultiBranchClassifier', 'CLILRClassifier')
def branches_loss(model, x, labels, kd_weight=None):
    _, _, _, logits = branch_outputs(model, x)
    loss = sum(ce(h, z, labels) for h, z in zip(model.heads, logits))
    if model.distill_loss is None:
        return loss
    w = kd_scale(model.distill_loss, kd_weight)
    return loss + w * sum(
        peer_kd(model.distill_loss, i, logits) for i in range(len(logits)))


branches_loss.unsupported = unsupported
