# Copyright (c) ffl_mm contributors.
"""The training step a hand-written PyTorch script would run.

The benchmark's yardstick for ffl_mm's own step: the same modules (built
from the same config, so the same architecture and initialisation), but
driven the way a plain script drives them:

* the batch is already a normalised float tensor ``(B, 3, H, W)`` and a
  label tensor ``(B, )`` (a script normalises in its data loader);
* the stem, stages, necks, fusion modules and the heads' linear layers
  are called directly: no data preprocessor, no ``DataSample``, no loss
  dictionary;
* the loss is written out with ``torch.nn.functional``;
* ``torch.optim`` steps the optimizer the config builds, its parameter
  groups merged where their settings are equal (one group per setting,
  as a script would write them), gradients freed before the backward
  pass.

* recomputed pre-necks (``fusion_pre_neck_with_cp``) are wrapped in
  ``torch.utils.checkpoint.checkpoint`` (with the selective policy where
  it is ``'selective'``), as a script would write it;
* DML's one-by-one update (its Algorithm 1) is the loop written out: one
  backward and optimizer step per network, the networks updated before
  it forwarded again without gradients for its targets.

Supported: MMPretrain ``ImageClassifier`` with a linear head (the single
network) and ``MultiBranchClassifier`` with linear heads and no
distillation (the cross-entropy floor), ``MutualKDLoss`` with a fused
classifier (FFL, MFEF) or a gated ensemble (ONE), ``PeerKDLoss`` (DML,
either update order; CL-ILR, its trunk's gradient rescaled by a hook) or
``DiversePeerKDLoss`` (OKDDip, the attention written out). Heads are
MMPretrain's ``LinearClsHead`` with a plain ``CrossEntropyLoss``.
:func:`reference_unsupported` says why a model is not.
"""
import copy
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.optim import build_optim_wrapper

from ffl_mm.engine.optimizers import merge_param_groups
from ffl_mm.models.classifiers import MultiBranchClassifier
from ffl_mm.models.losses import (DiversePeerKDLoss, MutualKDLoss,
                                  PeerKDLoss)
from ffl_mm.models.utils.recompute import keep_costly_results


def _head_unsupported(head: nn.Module, name: str,
                      linear: bool = True) -> Optional[str]:
    if linear and type(head).__name__ != 'LinearClsHead':
        return f'{name} is a {type(head).__name__}, not a LinearClsHead'
    loss = head.loss_module
    if type(loss).__name__ != 'CrossEntropyLoss' or loss.use_sigmoid or \
            loss.use_soft or loss.class_weight is not None or \
            getattr(head, 'cal_acc', False):
        return f'{name} has a loss other than a plain CrossEntropyLoss'
    return None


def reference_unsupported(model: nn.Module) -> Optional[str]:
    """Why the reference step cannot train ``model`` (None if it can)."""
    if type(model).__name__ == 'ImageClassifier':
        if model.data_preprocessor.batch_augments is not None:
            return 'batch augmentations'
        return _head_unsupported(model.head, 'the head')
    ensemble_head = getattr(model, 'ensemble_head', None)
    if ensemble_head is not None and (
            type(ensemble_head).__name__ != 'GatedEnsembleHead'
            or ensemble_head.gate_input != 'trunk'):
        return f'an ensemble head ({type(ensemble_head).__name__})'
    if not isinstance(model, MultiBranchClassifier):
        return f'a {type(model).__name__}'
    if model.data_preprocessor.batch_augments is not None:
        return 'batch augmentations'
    if getattr(model, 'heads_on_enhanced', False):
        return 'branch heads on the enhanced maps (heads_on_enhanced=True)'
    fusion_neck = getattr(model, 'fusion_neck', None)
    if getattr(fusion_neck, 'with_cp', False):
        return 'a recomputed fusion neck'
    kd = model.distill_loss
    # DML; FFL/MFEF (the fused classifier taught too); ONE
    covered = isinstance(kd, (PeerKDLoss, DiversePeerKDLoss)) or \
        isinstance(kd, MutualKDLoss) \
        and (model.with_fusion if kd.distill_fused else
             ensemble_head is not None)
    if kd is not None and not covered:
        return f'distillation by {type(kd).__name__}'
    heads = [(h, f'head {i}') for i, h in enumerate(model.heads)]
    if model.with_fusion:
        heads.append((model.fusion_head, 'the fused head'))
    for head, name in heads:
        reason = _head_unsupported(head, name)
        if reason:
            return reason
    if ensemble_head is not None:
        reason = _head_unsupported(ensemble_head, 'the ensemble head',
                                   linear=False)
        if reason:
            return reason
    return None


def _linear(head: nn.Module, feats) -> torch.Tensor:
    """A ``LinearClsHead``'s logits: its last input through its ``fc``."""
    x = feats[-1] if isinstance(feats, (list, tuple)) else feats
    return head.fc(x)


def _ce(head: nn.Module, logits: torch.Tensor,
        labels: torch.Tensor) -> torch.Tensor:
    return head.loss_module.loss_weight * F.cross_entropy(logits, labels)


def _kd(student: torch.Tensor, teacher: torch.Tensor,
        temperature: float, detach: bool = True) -> torch.Tensor:
    """``T² KL(softmax(t/T) ‖ softmax(s/T))``, batch mean, teacher
    detached (unless ``detach=False``)."""
    log_p = F.log_softmax(student / temperature, dim=1)
    log_q = F.log_softmax(
        (teacher.detach() if detach else teacher) / temperature, dim=1)
    return F.kl_div(log_p, log_q, reduction='batchmean',
                    log_target=True) * temperature**2


def _multi_branch_maps(model: nn.Module, x: torch.Tensor
                       ) -> Tuple[List[Tuple[torch.Tensor, ...]],
                                  Optional[torch.Tensor]]:
    """Every branch's backbone outputs and the shared trunk's output (or
    None): each backbone called on the images, or the shared stem and
    stages once and each branch's own stages on their output
    (``TrunkSplit.forward``: module calls only)."""
    if model.trunk is not None:
        return model.trunk.forward(model.backbones, x)
    return [_network_maps(model, i, x) for i in range(model.num_branches)], \
        None


def _network_maps(model: nn.Module, i: int,
                  x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    out = model.backbones[i](x)
    return tuple(out) if isinstance(out, (list, tuple)) else (out, )


def _network_logits(model: nn.Module, i: int,
                    x: torch.Tensor) -> torch.Tensor:
    """Network i of independent branches on its own."""
    return _linear(model.heads[i], model.necks[i](_network_maps(model, i, x)))


def _sac_contexts():
    return cp.create_selective_checkpoint_contexts(keep_costly_results)


def _enhance(model: nn.Module, maps: List[torch.Tensor]) -> List[torch.Tensor]:
    """The fusion pre-necks on the maps to fuse, checkpointed as a script
    would write it where the model recomputes them."""
    chains = model.fusion_pre_necks
    if not chains.with_cp:
        return [chain(m) for chain, m in zip(chains, maps)]
    kwargs = dict(use_reentrant=False)
    if chains.with_cp == 'selective':
        kwargs['context_fn'] = _sac_contexts
    return [
        cp.checkpoint(chain, m, **kwargs) for chain, m in zip(chains, maps)
    ]


def _peer_kd(kd: PeerKDLoss, i: int, logits: List[torch.Tensor]
             ) -> torch.Tensor:
    """Network i's DML (CL-ILR) term against its peers, unweighted."""
    T, detach = kd.temperature, kd.detach_peers
    peers = [z for j, z in enumerate(logits) if j != i]
    if kd.peer_target == 'each':
        return sum(_kd(logits[i], z, T, detach)
                   for z in peers) / len(peers)
    return _kd(logits[i], torch.stack(peers).mean(dim=0), T, detach)


def _kd_scale(kd: nn.Module, kd_weight: Optional[float]) -> float:
    if kd_weight is None:
        kd_weight = kd.current_weight()
    return kd_weight * kd.loss_weight


def reference_loss(model: nn.Module, x: torch.Tensor,
                   labels: torch.Tensor,
                   kd_weight: Optional[float] = None) -> torch.Tensor:
    """The training loss, written out.

    Args:
        model (nn.Module): A supported model (see the module docstring).
        x (Tensor): Normalised images ``(B, 3, H, W)``.
        labels (Tensor): ``(B, )`` class indices.
        kd_weight (float, optional): The ramp-up weight w; None: the
            weight the model's ``MutualKDLoss`` takes now (from the
            MessageHub's epoch; 1 outside a training run).

    Returns:
        Tensor: The summed loss, a scalar.
    """
    if type(model).__name__ == 'ImageClassifier':
        feats = model.backbone(x)
        if model.neck is not None:
            feats = model.neck(feats)
        return _ce(model.head, _linear(model.head, feats), labels)
    maps, trunk = _multi_branch_maps(model, x)
    if getattr(model, 'grad_rescale', False) and trunk is not None:
        # CL-ILR: the shared trunk's gradient divided by N
        trunk.register_hook(lambda g, n=model.num_branches: g / n)
    pooled = [neck(f) for f, neck in zip(maps, model.necks)]
    logits = [_linear(head, p) for p, head in zip(pooled, model.heads)]
    loss = sum(_ce(h, z, labels) for h, z in zip(model.heads, logits))
    kd = model.distill_loss
    if isinstance(kd, DiversePeerKDLoss):  # OKDDip
        feats = [p[-1] if isinstance(p, (list, tuple)) else p
                 for p in pooled[:-1]]
        attention = model.peer_attention
        f = torch.stack(feats, dim=1)
        a = (attention.query(f) @ attention.key(f).transpose(1, 2)).softmax(
            dim=-1)
        targets = (a @ torch.stack(logits[:-1], dim=1)).unbind(dim=1)
        T, detach = kd.temperature, kd.detach_targets
        peers = sum(_kd(z, t, T, detach)
                    for z, t in zip(logits[:-1], targets))
        leader = _kd(logits[-1], torch.stack(logits[:-1]).mean(dim=0), T,
                     detach)
        return loss + _kd_scale(kd, kd_weight) * (peers + leader)
    if isinstance(kd, PeerKDLoss):  # DML, the networks updated together
        w = _kd_scale(kd, kd_weight)
        return loss + w * sum(
            _peer_kd(kd, i, logits) for i in range(len(logits)))
    ensemble_head = getattr(model, 'ensemble_head', None)
    if ensemble_head is not None:  # ONE: the gate reads the trunk's map
        gate = ensemble_head.gate(trunk)
        teacher = (gate.unsqueeze(-1) * torch.stack(logits, dim=1)).sum(1)
        loss = loss + _ce(ensemble_head, teacher, labels)
        if kd is None:
            return loss
        w = _kd_scale(kd, kd_weight)
        return loss + w * sum(_kd(z, teacher, kd.temperature)
                              for z in logits)
    if not model.with_fusion:
        return loss
    fuse = [f[model.fusion_in_index] for f in maps]
    if model.fusion_pre_necks is not None:
        fuse = _enhance(model, fuse)
    fused = _linear(model.fusion_head, model.fusion_neck(fuse))
    loss = loss + _ce(model.fusion_head, fused, labels)
    if kd is None:
        return loss
    w = _kd_scale(kd, kd_weight)
    T = kd.temperature
    ensemble = torch.stack(logits).mean(dim=0)
    kd_terms = sum(_kd(z, fused, T) for z in logits) + _kd(fused, ensemble, T)
    return loss + w * kd_terms


def reference_optimizer(model: nn.Module,
                        optim_wrapper_cfg: dict) -> torch.optim.Optimizer:
    """The config's optimizer, with one parameter group per distinct
    setting (what a script writes by hand), as a ``torch.optim``
    optimizer."""
    built = build_optim_wrapper(model, copy.deepcopy(optim_wrapper_cfg))
    optimizer = built.optimizer
    groups = merge_param_groups(optimizer.param_groups)
    return type(optimizer)(groups, **optimizer.defaults)


class ReferenceStep:
    """One hand-written training step of ``model`` (modified in place).

    Args:
        model (nn.Module): A supported model, built and on its device.
        optim_wrapper_cfg (dict): The config's ``optim_wrapper`` (plain
            ``OptimWrapper``: this step has no AMP).
        data (dict): A batch as the data loader gives it; normalised once
            here by the model's data preprocessor (outside the timed step).

    Raises:
        ValueError: The model is not supported (the reason is named).
    """

    def __init__(self, model: nn.Module, optim_wrapper_cfg: dict,
                 data: dict):
        reason = reference_unsupported(model)
        if reason:
            raise ValueError(f'The reference step does not cover {reason}.')
        self.model = model.train()
        self.optimizer = reference_optimizer(model, optim_wrapper_cfg)
        with torch.no_grad():
            batch = model.data_preprocessor(copy.copy(data), False)
        self.inputs = batch['inputs'].detach().clone()
        self.labels = torch.cat(
            [s.gt_label for s in batch['data_samples']]).to(
                self.inputs.device)

    def step(self, data: Optional[dict] = None) -> torch.Tensor:
        """One step on the batch given at construction (``data`` is
        ignored: the script's loader has already normalised it).

        Returns:
            Tensor: The loss (detached).
        """
        if getattr(self.model, 'branch_update', None) == 'one_by_one':
            return self._one_by_one()
        self.optimizer.zero_grad(set_to_none=True)
        loss = reference_loss(self.model, self.inputs, self.labels)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _one_by_one(self) -> torch.Tensor:
        """DML's Algorithm 1: every network forwarded once; then each in
        turn gets its own loss against its peers' current predictions
        (those updated before it forwarded again, without gradients), a
        backward pass and an optimizer step."""
        model, x, labels = self.model, self.inputs, self.labels
        kd = model.distill_loss
        n = model.num_branches
        logits = [_network_logits(model, i, x) for i in range(n)]
        total = 0.
        for i in range(n):
            targets = [z.detach() for z in logits]
            if i:
                with torch.no_grad():
                    targets[:i] = [
                        _network_logits(model, j, x) for j in range(i)]
            targets[i] = logits[i]
            self.optimizer.zero_grad(set_to_none=True)
            loss = _ce(model.heads[i], logits[i], labels)
            if kd is not None:
                loss = loss + _kd_scale(kd, None) * _peer_kd(kd, i, targets)
            loss.backward()
            self.optimizer.step()
            total += float(loss)
        return torch.tensor(total)
