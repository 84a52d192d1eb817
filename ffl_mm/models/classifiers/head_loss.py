# Copyright (c) ffl_mm contributors.
"""A head's own loss on logits computed once, named for the log."""
from typing import Dict, List

import torch
import torch.nn as nn
from mmpretrain.models.losses import (CrossEntropyLoss, FocalLoss,
                                      LabelSmoothLoss)
from mmpretrain.structures import DataSample

from ...utils.private_api import head_loss

#: The log prefix of a head's loss term by its loss class, subclasses
#: included (others: 'loss'); a loss module may set ``log_prefix`` itself.
PREFIXES = ((LabelSmoothLoss, 'loss_ls'), (FocalLoss, 'loss_focal'),
            (CrossEntropyLoss, 'loss_ce'))


def loss_prefix(loss_module: nn.Module) -> str:
    """``loss_module``'s ``log_prefix`` where it declares one, else the
    prefix of the first class of :data:`PREFIXES` it is an instance of,
    else ``'loss'``."""
    declared = getattr(type(loss_module), 'log_prefix', None)
    if declared is not None:
        return declared
    for cls, prefix in PREFIXES:
        if isinstance(loss_module, cls):
            return prefix
    return 'loss'


def named_head_loss(head: nn.Module, logits: torch.Tensor,
                    data_samples: List[DataSample],
                    name: str) -> Dict[str, torch.Tensor]:
    """The head's own loss (MMPretrain's ``ClsHead._get_loss``) on logits
    ``(B, num_classes)``, named for the log: a head's ``loss`` term becomes
    ``loss_ce_{name}`` where its loss is a cross-entropy (MMPretrain's
    ``CrossEntropyLoss`` or a subclass), ``loss_{name}`` otherwise (a
    label-smoothing or focal loss keeps its own name: ``loss_ls_{name}``,
    ...; see :func:`loss_prefix`)."""
    prefix = loss_prefix(head.loss_module)
    named = {}
    for key, value in head_loss(head, logits, data_samples).items():
        key = prefix if key == 'loss' else key
        named[f'{key}_{name}'] = value
    return named
