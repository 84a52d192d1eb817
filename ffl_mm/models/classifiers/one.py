# Copyright (c) ffl_mm contributors.
"""ONE: a gated ensemble of the branches teaches them."""
from typing import Dict, List, Union

import torch
import torch.nn as nn

from ffl_mm.registry import MODELS
from ...utils import output_names as names
from . import branch_cfgs as bc
from .branch_features import BranchFeatures
from .multi_branch import MultiBranchClassifier


@MODELS.register_module()
class ONEClassifier(MultiBranchClassifier):
    """On-the-fly Native Ensemble (Lan, Zhu and Gong, NeurIPS 2018): a gate
    weighs the logits of identical branches into an ensemble, trained with
    its own cross-entropy, which teaches the branches.

    ::

        images -> trunk -> branch i -> f_i -> neck_i -> head_i -> z_i
        (trunk map or images, z_1 .. z_N) -> ensemble_head -> z_e
        loss = Σ CE(z_i) + CE(z_e) + distill_loss(z_1 .. z_N, z_e)

    Args:
        ensemble_head (dict): The gated ensemble, ``GatedEnsembleHead``; its
            ``num_branches`` and the gate's ``in_channels`` are filled in
            (the channels of the shared trunk's output, from the probe run,
            or 3 for ``gate_input='input'``).
        **kwargs: :class:`MultiBranchClassifier`'s arguments; its
            ``distill_loss`` is typically ``TeacherKDLoss``. The branches
            must be identical.
    """

    teacher_output = names.ENSEMBLE

    def __init__(self, ensemble_head: Union[dict, nn.Module], **kwargs):
        backbone = kwargs.get('backbone')
        if isinstance(backbone, (list, tuple)) and any(
                b != backbone[0] for b in backbone[1:]):
            raise ValueError(
                'ONEClassifier: the gated ensemble weighs the logits of '
                'identical branches; got different backbone configs. Use '
                "one backbone config with num_branches, or type="
                "'DMLClassifier' for different branches.")
        super().__init__(**kwargs)
        self.ensemble_head = self._build_ensemble_head(ensemble_head)

    def _build_ensemble_head(self, cfg: Union[dict, nn.Module]) -> nn.Module:
        """The head, its ``num_branches`` and gate channels filled in."""
        if isinstance(cfg, nn.Module):
            return cfg
        cfg = dict(cfg)
        cfg.setdefault('num_branches', self.num_branches)
        if cfg['num_branches'] != self.num_branches:
            raise ValueError(
                f"ONEClassifier: ensemble_head num_branches="
                f"{cfg['num_branches']} but the model has "
                f'{self.num_branches} branches; leave it out.')
        gate_input = cfg.get('gate_input', 'trunk')
        if gate_input == 'trunk' and self.trunk is None:
            raise ValueError(
                "ONEClassifier: ensemble_head gate_input='trunk' reads the "
                "shared stages; set shared_stages >= 1 or gate_input="
                "'input'.")
        if cfg.get('in_channels') is None:
            cfg['in_channels'] = 3 if gate_input == 'input' else \
                self.probe_branches().trunk_channels
        return bc.build(cfg)

    def teacher_head(self):
        return self.ensemble_head

    def forward_teacher(self, features: BranchFeatures,
                        branch_logits: List[torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
        """``ensemble``: the gated ensemble of the branch logits, its gate
        reading the trunk's map or the images."""
        gate = features.images if self.ensemble_head.gate_input == 'input' \
            else features.trunk
        return {names.ENSEMBLE: self.ensemble_head(gate, branch_logits)}
