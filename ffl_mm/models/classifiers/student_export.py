# Copyright (c) ffl_mm contributors.
"""A branch of a multi-branch classifier as a plain MMPretrain
``ImageClassifier``: its config and its weights (``tools/export.py``)."""
import copy
from collections import OrderedDict
from typing import Dict, Optional, Union

import torch
import torch.nn as nn

from ...utils import branch_keys

ConfigType = Union[dict, nn.Module]


class StudentExportMixin:
    """``branch_cfg`` and ``branch_state_dict`` of
    :class:`MultiBranchClassifier` (which fills ``_branch_cfgs`` and has
    ``backbones``, ``trunk``, ``necks`` and ``heads``), and
    ``branches_in`` for checkpoints of its layout."""

    @staticmethod
    def branches_in(state_dict: dict) -> Optional[int]:
        """The number of branches of a state dict of this layout (its
        ``heads.{i}.*`` keys); None where it has none."""
        return branch_keys.branches_in(state_dict)

    def branch_cfg(self, branch: int) -> Dict[str, Optional[ConfigType]]:
        """``backbone``, ``neck`` and ``head`` of branch ``branch`` as a
        plain ``ImageClassifier`` takes them (inferred channels filled
        in)."""
        return copy.deepcopy(self._branch_cfgs[branch])

    def branch_state_dict(self, branch: int) -> Dict[str, torch.Tensor]:
        """Branch ``branch`` with ``ImageClassifier``'s keys: ``backbone.*``
        (with a shared trunk, the trunk's modules and the branch's own
        stages), ``neck.*`` and ``head.*``; detached copies."""
        backbone = self.backbones[branch].state_dict() if self.trunk is None \
            else self.trunk.backbone_state_dict(self.backbones, branch)
        state = OrderedDict()
        for prefix, part in (('backbone.', backbone),
                             ('neck.', self.necks[branch].state_dict()),
                             ('head.', self.heads[branch].state_dict())):
            for key, value in part.items():
                state[prefix + key] = value.detach().clone()
        return state
