# Copyright (c) ffl_mm contributors.
"""DML's distillation between peer networks."""
from typing import Dict, Optional, Sequence

import torch

from ffl_mm.registry import MODELS
from .kd_loss import kd_kl_div
from .rampup import RampedKDLoss

PEER_TARGETS = ('each', 'mean_logits')


@MODELS.register_module()
class PeerKDLoss(RampedKDLoss):
    """Deep Mutual Learning (Zhang et al., CVPR 2018): every branch learns
    from each of its peers, the peers' predictions as fixed targets::

        loss_kd_branch{i} = w(e) · λ · 1/(N-1) · Σ_{j≠i} KD(z_i ← z_j)

    with ``KD(s ← t) = T² · KL(softmax(t/T) ‖ softmax(s/T))`` (the peer
    detached). With T = 1 (the paper's: it has no temperature) this is the
    paper's loss; OKDDip's and MCL-OKD's re-implementations use T = 3 and
    T = 2. No teacher output is needed: a ``MultiBranchClassifier`` with
    this loss needs no fusion module.

    Args:
        temperature (float): T. Defaults to 1.0 (the paper).
        loss_weight (float): λ. Defaults to 1.0.
        rampup (float, optional): R of the ramp-up ``exp(-5 (1 - e/R)²)``;
            None (default, the paper) or 0: no ramp.
        by_epoch (bool): Ramp by epoch (default) or by iteration.
        peer_target (str): ``'each'`` (default, the paper): the mean over
            the peers of each peer's KL; ``'mean_logits'``: one KL from
            ``softmax(mean_{j≠i} z_j / T)`` (OKDDip's default mode, and
            CL-ILR's target). Equal for 2 branches.
        detach_peers (bool): Keep the peers' predictions fixed, as DML's
            paper does (default). False: the gradient of branch i's KL also
            reaches the peers that make its target, as CL-ILR's and
            OKDDip's code do.
    """

    #: the branches teach one another: no teacher, no training targets
    needs_teacher = False
    target_keys = ()

    def __init__(self,
                 temperature: float = 1.0,
                 loss_weight: float = 1.0,
                 rampup: Optional[float] = None,
                 by_epoch: bool = True,
                 peer_target: str = 'each',
                 detach_peers: bool = True):
        super().__init__(temperature, loss_weight, rampup, by_epoch)
        self.detach_peers = bool(detach_peers)
        if peer_target not in PEER_TARGETS:
            raise ValueError(f'PeerKDLoss: peer_target={peer_target!r}; '
                             f'choose one of {list(PEER_TARGETS)}.')
        self.peer_target = peer_target

    def forward(self,
                branch_logits: Sequence[torch.Tensor],
                teacher_logits: Optional[torch.Tensor] = None,
                progress: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            branch_logits (Sequence[Tensor]): N >= 2 tensors ``(B, C)``.
            teacher_logits (Tensor, optional): Not used (DML has no
                teacher output); accepted so that the classifier can call
                every distillation loss alike.
            progress (float, optional): Epoch (or iteration) for the ramp;
                read from the MessageHub when None.

        Returns:
            dict[str, Tensor]: ``loss_kd_branch{i}`` for each branch and
            ``kd_weight`` (logged, not a loss).
        """
        n = len(branch_logits)
        if n < 2:
            raise ValueError(f'PeerKDLoss needs at least 2 branches, got {n}.')
        weight = self.current_weight(progress) * self.loss_weight
        T, detach = self.temperature, self.detach_peers
        losses = {}
        for i, logits in enumerate(branch_logits):
            peers = [z for j, z in enumerate(branch_logits) if j != i]
            if self.peer_target == 'each':
                kd = sum(kd_kl_div(logits, z, T, detach)
                         for z in peers) / (n - 1)
            else:
                kd = kd_kl_div(logits, torch.stack(peers).mean(dim=0), T,
                               detach)
            losses[f'loss_kd_branch{i}'] = weight * kd
        losses['kd_weight'] = branch_logits[0].new_tensor(
            weight, dtype=torch.float32)
        return losses

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, peer_target={self.peer_target!r}' \
            f', detach_peers={self.detach_peers}'
