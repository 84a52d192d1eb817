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

The loss of each method is written out in its own module of
:mod:`.reference_losses` (registered for its classifier class; DML's
one-by-one update and MFEF's checkpointed pre-necks are written there as a
script would). Heads are MMPretrain's ``LinearClsHead`` with a plain
``CrossEntropyLoss``. :func:`reference_unsupported` says why a model is
not covered, a method without a module among them.
"""
import copy
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper

from ffl_mm.engine.optimizers import merge_param_groups
from ffl_mm.models.classifiers import MultiBranchClassifier


def head_unsupported(head: nn.Module, name: str,
                     linear: bool = True) -> Optional[str]:
    """Why ``head`` is not written out (None: a ``LinearClsHead``, or any
    head with ``linear=False``, with a plain ``CrossEntropyLoss``)."""
    if linear and type(head).__name__ != 'LinearClsHead':
        return f'{name} is a {type(head).__name__}, not a LinearClsHead'
    loss = head.loss_module
    if type(loss).__name__ != 'CrossEntropyLoss' or loss.use_sigmoid or \
            loss.use_soft or loss.class_weight is not None or \
            getattr(head, 'cal_acc', False):
        return f'{name} has a loss other than a plain CrossEntropyLoss'
    return None


def method_loss(model: nn.Module):
    """The registered hand-written loss of ``model``'s class, or None."""
    from .reference_losses import lookup
    return lookup(type(model).__name__)


def reference_unsupported(model: nn.Module) -> Optional[str]:
    """Why the reference step cannot train ``model`` (None if it can)."""
    if type(model).__name__ == 'ImageClassifier':
        if model.data_preprocessor.batch_augments is not None:
            return 'batch augmentations'
        return head_unsupported(model.head, 'the head')
    if not isinstance(model, MultiBranchClassifier):
        return f'a {type(model).__name__}'
    loss_fn = method_loss(model)
    if loss_fn is None:
        return (f'a {type(model).__name__} (no hand-written loss in '
                'ffl_mm_analysis/reference_losses/)')
    if model.data_preprocessor.batch_augments is not None:
        return 'batch augmentations'
    for i, head in enumerate(model.heads):
        reason = head_unsupported(head, f'head {i}')
        if reason:
            return reason
    check = getattr(loss_fn, 'unsupported', None)
    return check(model) if check is not None else None


def linear(head: nn.Module, feats) -> torch.Tensor:
    """A ``LinearClsHead``'s logits: its last input through its ``fc``."""
    x = feats[-1] if isinstance(feats, (list, tuple)) else feats
    return head.fc(x)


def ce(head: nn.Module, logits: torch.Tensor,
       labels: torch.Tensor) -> torch.Tensor:
    return head.loss_module.loss_weight * F.cross_entropy(logits, labels)


def kd(student: torch.Tensor, teacher: torch.Tensor,
       temperature: float, detach: bool = True) -> torch.Tensor:
    """``T² KL(softmax(t/T) ‖ softmax(s/T))``, batch mean, teacher
    detached (unless ``detach=False``)."""
    log_p = F.log_softmax(student / temperature, dim=1)
    log_q = F.log_softmax(
        (teacher.detach() if detach else teacher) / temperature, dim=1)
    return F.kl_div(log_p, log_q, reduction='batchmean',
                    log_target=True) * temperature**2


def kd_scale(loss_fn: nn.Module, kd_weight: Optional[float]) -> float:
    """``w · λ``: the ramp-up weight (the loss's current one when
    ``kd_weight`` is None) times the loss weight."""
    if kd_weight is None:
        kd_weight = loss_fn.current_weight()
    return kd_weight * loss_fn.loss_weight


def network_maps(model: nn.Module, i: int,
                 x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Branch i's backbone outputs on ``x`` (independent branches)."""
    out = model.backbones[i](x)
    return tuple(out) if isinstance(out, (list, tuple)) else (out, )


def branch_outputs(model: nn.Module, x: torch.Tensor):
    """``(maps, trunk, pooled, logits)`` of the branches: every branch's
    backbone outputs (the shared stem and stages once with a trunk,
    ``TrunkSplit.forward``: module calls only), the trunk's output or
    None, the necks' outputs and the linear heads' logits. CL-ILR's
    trunk gradient is divided by N with a hook, as a script would."""
    if model.trunk is not None:
        maps, trunk = model.trunk.forward(model.backbones, x)
    else:
        maps = [network_maps(model, i, x) for i in range(model.num_branches)]
        trunk = None
    if getattr(model, 'grad_rescale', False) and trunk is not None:
        trunk.register_hook(lambda g, n=model.num_branches: g / n)
    pooled = [neck(f) for f, neck in zip(maps, model.necks)]
    logits = [linear(head, p) for p, head in zip(pooled, model.heads)]
    return maps, trunk, pooled, logits


def reference_loss(model: nn.Module, x: torch.Tensor,
                   labels: torch.Tensor,
                   kd_weight: Optional[float] = None) -> torch.Tensor:
    """The training loss, written out.

    Args:
        model (nn.Module): A supported model (see the module docstring).
        x (Tensor): Normalised images ``(B, 3, H, W)`` (KDCL: ``(B, N, 3,
            H, W)``, one view per student).
        labels (Tensor): ``(B, )`` class indices.
        kd_weight (float, optional): The ramp-up weight w; None: the
            weight the model's distillation loss takes now (from the
            MessageHub's epoch; 1 outside a training run).

    Returns:
        Tensor: The summed loss, a scalar.
    """
    if type(model).__name__ == 'ImageClassifier':
        feats = model.backbone(x)
        if model.neck is not None:
            feats = model.neck(feats)
        return ce(model.head, linear(model.head, feats), labels)
    return method_loss(model)(model, x, labels, kd_weight)


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
        special = getattr(method_loss(self.model), 'step', None)
        if special is not None:
            loss = special(self)
            if loss is not None:
                return loss
        self.optimizer.zero_grad(set_to_none=True)
        loss = reference_loss(self.model, self.inputs, self.labels)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
