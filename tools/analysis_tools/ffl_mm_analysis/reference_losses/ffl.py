# Copyright (c) ffl_mm contributors.
"""FFL and MFEF: the fused classifier (recomputed pre-necks in PyTorch's
checkpoint, as a script would write it) and the mutual distillation."""
import torch
import torch.utils.checkpoint as cp

from ffl_mm.models.losses import MutualKDLoss
from ffl_mm.models.utils.recompute import keep_costly_results
from ..reference_step import (branch_outputs, ce, head_unsupported, kd,
                              kd_scale, linear)
from . import register


def _sac_contexts():
    return cp.create_selective_checkpoint_contexts(keep_costly_results)


def _enhance(model, maps):
    """The fusion pre-necks on the maps to fuse, checkpointed as a script
    would write it where the model recomputes them."""
    chains = model.fusion_pre_necks
    if not chains.with_cp:
        return [chain(m) for chain, m in zip(chains, maps)]
    kwargs = dict(use_reentrant=False)
    if chains.with_cp == 'selective':
        kwargs['context_fn'] = _sac_contexts
    return [cp.checkpoint(chain, m, **kwargs)
            for chain, m in zip(chains, maps)]


def unsupported(model):
    if model.heads_on_enhanced:
        return 'branch heads on the enhanced maps (heads_on_enhanced=True)'
    if getattr(model.fusion_neck, 'with_cp', False):
        return 'a recomputed fusion neck'
    loss = model.distill_loss
    if loss is not None and not isinstance(loss, MutualKDLoss):
        return f'distillation by {type(loss).__name__}'
    return head_unsupported(model.fusion_head, 'the fused head')


@register('FFLClassifier')
def ffl_loss(model, x, labels, kd_weight=None):
    maps, _, _, logits = branch_outputs(model, x)
    loss = sum(ce(h, z, labels) for h, z in zip(model.heads, logits))
    fuse = [f[model.fusion_in_index] for f in maps]
    if model.fusion_pre_necks is not None:
        fuse = _enhance(model, fuse)
    fused = linear(model.fusion_head, model.fusion_neck(fuse))
    loss = loss + ce(model.fusion_head, fused, labels)
    loss_fn = model.distill_loss
    if loss_fn is None:
        return loss
    T = loss_fn.temperature
    ensemble = torch.stack(logits).mean(dim=0)
    terms = sum(kd(z, fused, T) for z in logits) + kd(fused, ensemble, T)
    return loss + kd_scale(loss_fn, kd_weight) * terms


ffl_loss.unsupported = unsupported
