# Copyright (c) ffl_mm contributors.
"""OKDDip's attention over peers: each peer's own mix of the peers'
predictions."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ffl_mm.registry import MODELS


@MODELS.register_module()
class PeerAttention(BaseModule):
    """The two-level distillation's first level in OKDDip (Chen et al.,
    AAAI 2020): from the peers' pooled features ``f_j`` ``(B, C)``, two
    projections shared by the peers give queries and keys, and peer i's
    target is its attention-weighted mix of the peers' logits::

        q_i = W_q f_i,  k_j = W_k f_j            (B, d), no bias
        a_ij = softmax_j(q_i · k_j)              (B, P, P), self included
        target_i = Σ_j a_ij z_j                  (B, K)

    As in the authors' code (``query_weight``, ``key_weight``: 64 -> 8 for
    CIFAR ResNets) the projections learn only through the targets, so the
    targets must keep their graph (``DiversePeerKDLoss(detach_targets=
    False)``, the default).

    Args:
        in_channels (int, optional): C, the peers' feature size; filled in
            by ``OKDDipClassifier``.
        num_peers (int, optional): P >= 2; filled in by the classifier.
        embed_channels (int, optional): d. Defaults to ``max(C // 8, 1)``
            (the authors' 64 -> 8).
        init_cfg (dict, optional): Defaults to None: PyTorch's default
            initialisation of the Linear layers, as the authors' code.
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 num_peers: Optional[int] = None,
                 embed_channels: Optional[int] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if in_channels is None or num_peers is None:
            raise ValueError(
                'PeerAttention: in_channels and num_peers are unknown; '
                'build it inside OKDDipClassifier (which fills them in) or '
                'give them.')
        if num_peers < 2:
            raise ValueError(f'PeerAttention: num_peers={num_peers}; the '
                             'attention mixes at least 2 peers.')
        self.in_channels = in_channels
        self.num_peers = num_peers
        self.embed_channels = embed_channels or max(in_channels // 8, 1)
        self.query = nn.Linear(in_channels, self.embed_channels, bias=False)
        self.key = nn.Linear(in_channels, self.embed_channels, bias=False)

    def forward(self, feats: Sequence[torch.Tensor],
                logits: Sequence[torch.Tensor]
                ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """
        Args:
            feats (Sequence[Tensor]): P features ``(B, C)``.
            logits (Sequence[Tensor]): P logits ``(B, K)``.

        Returns:
            tuple: P targets ``(B, K)`` and the attention ``(B, P, P)``
            (row i: peer i's weights over the peers, summing to 1).
        """
        if len(feats) != self.num_peers or len(logits) != self.num_peers:
            raise ValueError(
                f'PeerAttention was built for {self.num_peers} peers, got '
                f'{len(feats)} features and {len(logits)} logits.')
        f = torch.stack(tuple(feats), dim=1)  # (B, P, C)
        scores = self.query(f) @ self.key(f).transpose(1, 2)
        attention = scores.softmax(dim=-1)  # (B, P, P)
        targets = attention @ torch.stack(tuple(logits), dim=1)
        return list(targets.unbind(dim=1)), attention
