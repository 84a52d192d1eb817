# Copyright (c) ffl_mm contributors.
"""OKDDip's two-level distillation: peers from their own targets, the
leader from the peers' mean."""
from typing import Dict, Optional, Sequence

import torch

from ffl_mm.registry import MODELS
from .kd_loss import kd_kl_div
from .rampup import RampedKDLoss


@MODELS.register_module()
class DiversePeerKDLoss(RampedKDLoss):
    """Online distillation with diverse peers (Chen et al., AAAI 2020)::

        loss_kd_branch{i} = w(e) · λ · T² KL(softmax(t_i/T) ‖ softmax(z_i/T))
        loss_kd_branch{P} = w(e) · λ · T² KL(softmax(mean_i z_i/T)
                                              ‖ softmax(z_leader/T))

    for the P peers (their targets ``t_i`` from :class:`PeerAttention`) and
    the group leader (the last branch). As in the authors' code the targets
    keep their graph: each KL also trains the peers and the attention that
    make its target (the attention learns only this way).

    Args:
        temperature (float): T. Defaults to 3.0 (the authors').
        loss_weight (float): λ. Defaults to 1.0.
        rampup (float, optional): R of the ramp-up ``exp(-5 (1 - e/R)²)``;
            None or 0: no ramp.
        by_epoch (bool): Ramp by epoch (default) or by iteration.
        detach_targets (bool): Keep the targets fixed (the attention then
            gets no gradient). Defaults to False (the authors' code).
    """

    #: no teacher output; the peers' targets from the classifier's
    #: ``forward_targets`` (``OKDDipClassifier``'s attention)
    needs_teacher = False
    target_keys = ('peer_targets', )

    def __init__(self,
                 temperature: float = 3.0,
                 loss_weight: float = 1.0,
                 rampup: Optional[float] = None,
                 by_epoch: bool = True,
                 detach_targets: bool = False):
        super().__init__(temperature, loss_weight, rampup, by_epoch)
        self.detach_targets = bool(detach_targets)

    def forward(self,
                peer_logits: Sequence[torch.Tensor],
                peer_targets: Sequence[torch.Tensor],
                leader_logits: torch.Tensor,
                progress: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            peer_logits (Sequence[Tensor]): P peers' logits ``(B, K)``.
            peer_targets (Sequence[Tensor]): Their targets ``(B, K)``.
            leader_logits (Tensor): ``(B, K)``.
            progress (float, optional): Epoch (or iteration) for the ramp;
                read from the MessageHub when None.

        Returns:
            dict[str, Tensor]: ``loss_kd_branch{i}`` for each peer and the
            leader (``branch{P}``) and ``kd_weight`` (logged, not a loss).
        """
        if len(peer_logits) != len(peer_targets):
            raise ValueError(
                f'DiversePeerKDLoss: {len(peer_logits)} peers but '
                f'{len(peer_targets)} targets.')
        weight = self.current_weight(progress) * self.loss_weight
        T, detach = self.temperature, self.detach_targets
        losses = {
            f'loss_kd_branch{i}': weight * kd_kl_div(z, t, T, detach)
            for i, (z, t) in enumerate(zip(peer_logits, peer_targets))
        }
        mean = torch.stack(tuple(peer_logits)).mean(dim=0)
        losses[f'loss_kd_branch{len(peer_logits)}'] = weight * kd_kl_div(
            leader_logits, mean, T, detach)
        losses['kd_weight'] = leader_logits.new_tensor(
            weight, dtype=torch.float32)
        return losses

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, detach_targets={self.detach_targets}'
