# Copyright (c) ffl_mm contributors.
"""DML: the networks updated together (the branches' loss) or one by one
(the paper's Algorithm 1, the loop written out)."""
import torch

from ..reference_step import ce, kd_scale, linear, network_maps
from . import register
from .branches import branches_loss, peer_kd, unsupported


def _network_logits(model, i, x):
    """Network i of independent branches on its own."""
    return linear(model.heads[i], model.necks[i](network_maps(model, i, x)))


def _one_by_one(reference):
    """Every network forwarded once; then each in turn gets its own loss
    against its peers' current predictions (those updated before it
    forwarded again, without gradients), a backward pass and an optimizer
    step."""
    model, x, labels = reference.model, reference.inputs, reference.labels
    loss_fn = model.distill_loss
    n = model.num_branches
    logits = [_network_logits(model, i, x) for i in range(n)]
    total = 0.
    for i in range(n):
        targets = [z.detach() for z in logits]
        if i:
            with torch.no_grad():
                targets[:i] = [_network_logits(model, j, x) for j in range(i)]
        targets[i] = logits[i]
        reference.optimizer.zero_grad(set_to_none=True)
        loss = ce(model.heads[i], logits[i], labels)
        if loss_fn is not None:
            loss = loss + kd_scale(loss_fn, None) * peer_kd(loss_fn, i,
                                                            targets)
        loss.backward()
        reference.optimizer.step()
        total += float(loss)
    return torch.tensor(total)


@register('DMLClassifier')
def dml_loss(model, x, labels, kd_weight=None):
    return branches_loss(model, x, labels, kd_weight)


def dml_step(reference):
    """One step of ``reference`` (a ``ReferenceStep``); None: the usual
    one backward and one optimizer step."""
    if reference.model.branch_update == 'one_by_one':
        return _one_by_one(reference)
    return None


dml_loss.unsupported = unsupported
dml_loss.step = dml_step
