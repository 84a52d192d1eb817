# Copyright (c) ffl_mm contributors.
"""What a multi-branch classifier's backbones give for a batch."""
from typing import List, NamedTuple, Optional, Tuple

import torch


class BranchFeatures(NamedTuple):
    """What the backbones give for a batch.

    Attributes:
        images (Tensor): The input ``(B, 3, H, W)``.
        feats (list[tuple[Tensor]]): Each branch's backbone outputs, as a
            plain backbone returns them (the branch necks take them).
        trunk (Tensor, optional): The shared trunk's output ``(B, C, H',
            W')`` with ``shared_stages``; None for independent branches.
        fusion_maps (list[Tensor], optional): The maps a fusion neck takes
            (:class:`FFLClassifier`); None otherwise.
    """
    images: torch.Tensor
    feats: List[Tuple[torch.Tensor, ...]]
    trunk: Optional[torch.Tensor] = None
    fusion_maps: Optional[List[torch.Tensor]] = None
