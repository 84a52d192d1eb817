# Copyright (c) ffl_mm contributors.
"""OKDDip: peers that learn from their own mixes of one another, and a
group leader that learns from the peers."""
from typing import Dict, List, Union

import torch
import torch.nn as nn

from ffl_mm.registry import MODELS
from ...utils import output_names as names
from . import branch_cfgs as bc
from .multi_branch import MultiBranchClassifier


@MODELS.register_module()
class OKDDipClassifier(MultiBranchClassifier):
    """Online Knowledge Distillation with Diverse Peers (Chen, Mei, Wang,
    Feng, Chen, AAAI 2020): N branches, the first N - 1 the peers and the
    last the group leader, which alone is deployed::

        images -> [trunk] -> branch i -> neck_i -> f_i -> head_i -> z_i
        peer_attention(f_0 .. f_{P-1}, z_0 .. z_{P-1}) -> targets t_i
        loss = Σ_i CE(z_i) + CE(z_leader)
               + distill_loss(z_peers, t_peers, z_leader)

    ``distill_loss`` is :class:`~ffl_mm.models.losses.DiversePeerKDLoss`
    (each peer from its target, the leader from the peers' mean) and
    ``peer_attention`` a :class:`~ffl_mm.models.heads.PeerAttention` (its
    ``in_channels`` and ``num_peers`` are filled in). The leader is
    ``branch{N-1}``: ``test_cfg.predict`` selects it by default, and
    ``tools/export.py --branch N-1`` exports it as a plain MMPretrain
    model. Every branch and the ensemble (the mean of all N) are evaluated
    too.

    Args:
        peer_attention (dict): The attention over the peers. Defaults to
            ``dict(type='PeerAttention')``.
        **kwargs: :class:`MultiBranchClassifier`'s arguments; N >= 3 (two
            peers and the leader), every peer's head input of one size.
    """

    #: what :meth:`forward_targets` gives ``distill_loss``
    target_keys = ('peer_targets', )

    def __init__(self,
                 peer_attention: Union[dict, nn.Module] = dict(
                     type='PeerAttention'),
                 **kwargs):
        super().__init__(**kwargs)
        if self.num_branches < 3:
            raise ValueError(
                f'OKDDipClassifier: num_branches={self.num_branches}; it '
                'needs at least 2 peers and the group leader (the last '
                'branch): num_branches >= 3.')
        self.peer_attention = self._build_attention(peer_attention)

    @classmethod
    def output_roles(cls, num_branches: int) -> Dict[str, str]:
        """The last branch is the group leader."""
        return {names.branch_name(num_branches - 1): 'leader'}

    @property
    def default_predict(self) -> str:
        """The group leader, the last branch."""
        return names.branch_name(self.num_branches - 1)

    def _build_attention(self, cfg: Union[dict, nn.Module]) -> nn.Module:
        if isinstance(cfg, nn.Module):
            return cfg
        peers = self.num_branches - 1
        probe = self.probe_branches()
        sizes = [probe.head_in(i) for i in range(peers)]
        if len(set(sizes)) > 1:
            raise ValueError(
                'OKDDipClassifier: the peers\' features differ in size '
                f'({sizes}: ' + '; '.join(probe.source(i)
                                          for i in range(peers)) +
                '); the attention projects every peer with the same '
                'weights. Give the peers backbones with one feature size.')
        cfg = dict(cfg)
        cfg.setdefault('num_peers', peers)
        if cfg.get('in_channels') is None:
            cfg['in_channels'] = sizes[0]
        return bc.build(cfg)

    def forward_targets(self, pooled: List, branch_logits: List[torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
        """``{'peer_targets': [t_0 .. t_{P-1}]}``: each peer's
        attention-weighted mix of the peers' logits, ``(B, num_classes)``
        each (``pooled``: the branch necks' outputs; the peers' last ones
        ``(B, C)`` go into the attention)."""
        feats = [p[-1] if isinstance(p, (list, tuple)) else p
                 for p in pooled[:-1]]
        targets, _ = self.peer_attention(feats, branch_logits[:-1])
        return {'peer_targets': targets}

    def distill(self, branch_logits: List[torch.Tensor], teacher,
                targets: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Each peer towards its target and the leader towards the peers'
        mean (``loss_kd_branch{i}``, ``kd_weight``)."""
        return self.distill_loss(branch_logits[:-1], targets['peer_targets'],
                                 branch_logits[-1])
