# Copyright (c) ffl_mm contributors.
"""A head's own loss on logits computed once, named for the log."""
from typing import Dict, List

import torch
import torch.nn as nn
from mmpretrain.structures import DataSample

#: The log prefix of a head's loss term by its loss class (others: 'loss')
PREFIXES = {'CrossEntropyLoss': 'loss_ce', 'LabelSmoothLoss': 'loss_ls',
            'FocalLoss': 'loss_focal'}


def named_head_loss(head: nn.Module, logits: torch.Tensor,
                    data_samples: List[DataSample],
                    name: str) -> Dict[str, torch.Tensor]:
    """The head's own loss (MMPretrain's ``ClsHead._get_loss``) on logits
    ``(B, num_classes)``, named for the log: a head's ``loss`` term becomes
    ``loss_ce_{name}`` where its loss is a cross-entropy (MMPretrain's
    ``CrossEntropyLoss``), ``loss_{name}`` otherwise (a label-smoothing or
    focal loss keeps its own name: ``loss_ls_{name}``, ...)."""
    kind = type(getattr(head, 'loss_module', None)).__name__
    prefix = PREFIXES.get(kind, 'loss')
    named = {}
    for key, value in head._get_loss(logits, data_samples).items():
        key = prefix if key == 'loss' else key
        named[f'{key}_{name}'] = value
    return named
