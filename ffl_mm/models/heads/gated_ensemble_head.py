# Copyright (c) ffl_mm contributors.
"""ONE's gate: a learned, per-sample weighting of the branch logits."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead

from ffl_mm.registry import MODELS

GATE_INPUTS = ('trunk', 'input')


@MODELS.register_module()
class GatedEnsembleHead(ClsHead):
    """The gated ensemble of ONE (Lan, Zhu, Gong, NeurIPS 2018).

    A gate on the shared features gives each sample one weight per
    branch, and the ensemble (ONE's teacher) is the weighted sum of the
    branch logits::

        g = softmax(ReLU(BN(Linear(GAP(x)))))          (B, N)
        z_e = Σ_i g_i · z_i                            (B, C)

    as in the authors' code, where the paper says only "a gate": the gate
    reads the pooled output of the last shared stage (``gate_input=
    'trunk'``), a Linear layer with bias, BatchNorm1d, and a ReLU *before*
    the softmax (a sample whose scores are all <= 0 gets the uniform
    weights 1/N). The ensemble's cross-entropy (this head's ``loss``)
    trains the gate, the branches and the trunk; the distillation treats
    ``z_e`` as a fixed teacher.

    Args:
        num_branches (int): N >= 2.
        in_channels (int, optional): Channels of the gate's input; filled in
            by ``ONEClassifier`` when None.
        gate_input (str): ``'trunk'`` (default, the authors' code): the
            last shared stage's output (needs ``shared_stages >= 1``);
            ``'input'``: the images.
        with_bias (bool): Whether the gate's Linear layer has a bias.
            Defaults to True (the authors'); its gradient is zero anyway,
            BN follows.
        with_bn (bool): BatchNorm1d on the gate's scores. Defaults to True.
        with_relu (bool): ReLU before the softmax. Defaults to True.
        loss (dict): The ensemble's classification loss. Defaults to
            ``CrossEntropyLoss``.
        init_cfg (dict, optional): Defaults to None: PyTorch's default
            initialisation of the Linear and BN layers, as in the
            authors' code.
    """

    def __init__(self,
                 num_branches: int,
                 in_channels: Optional[int] = None,
                 gate_input: str = 'trunk',
                 with_bias: bool = True,
                 with_bn: bool = True,
                 with_relu: bool = True,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(loss=loss, init_cfg=init_cfg, **kwargs)
        if not isinstance(num_branches, int) or num_branches < 2:
            raise ValueError(f'GatedEnsembleHead: num_branches='
                             f'{num_branches!r}; it weighs at least 2 '
                             'branches.')
        if gate_input not in GATE_INPUTS:
            raise ValueError(f'GatedEnsembleHead: gate_input={gate_input!r};'
                             f' choose one of {list(GATE_INPUTS)}.')
        if in_channels is None:
            raise ValueError('GatedEnsembleHead: in_channels is unknown; '
                             'build it inside ONEClassifier (which '
                             'fills it in) or give it.')
        self.num_branches = num_branches
        self.in_channels = in_channels
        self.gate_input = gate_input
        self.fc = nn.Linear(in_channels, num_branches, bias=with_bias)
        self.bn = nn.BatchNorm1d(num_branches) if with_bn else nn.Identity()
        self.with_relu = with_relu

    def gate(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-sample branch weights.

        Args:
            feats (Tensor): The gate's input ``(B, C, H, W)`` (or already
                pooled ``(B, C)``).

        Returns:
            Tensor: ``(B, N)``, non-negative, each row summing to 1.
        """
        if feats.dim() == 4:
            feats = F.adaptive_avg_pool2d(feats, 1).flatten(1)
        scores = self.bn(self.fc(feats))
        if self.with_relu:
            scores = F.relu(scores)
        return F.softmax(scores, dim=1)

    def forward(self, feats: torch.Tensor,
                branch_logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The gated ensemble's logits.

        Args:
            feats (Tensor): The gate's input ``(B, C, H, W)``.
            branch_logits (Sequence[Tensor]): N tensors ``(B, K)``.

        Returns:
            Tensor: ``(B, K)``, ``Σ_i g_i · z_i``.
        """
        if len(branch_logits) != self.num_branches:
            raise ValueError(f'GatedEnsembleHead was built for '
                             f'{self.num_branches} branches, got '
                             f'{len(branch_logits)} logits.')
        weights = self.gate(feats)
        stacked = torch.stack(tuple(branch_logits), dim=1)  # (B, N, K)
        return (weights.unsqueeze(-1) * stacked).sum(dim=1)
