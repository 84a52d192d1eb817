# Copyright (c) ffl_mm contributors.
"""The per-branch enhancement of the maps to fuse (MFEF)."""
import copy
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import ModuleList, Sequential

from ffl_mm.registry import MODELS
from ..kernels import recompute_in_backward
from ..kernels.multi_scale_attention import fusable, multi_scale_attention


class FusionPreNecks(ModuleList):
    """One chain of necks per branch, applied to that branch's map before
    the fusion neck (MFEF's multi-scale extraction and dual attention).

    Entry ``[i][j]`` is neck ``j`` of branch ``i``, so the state-dict keys
    under a classifier's ``fusion_pre_necks`` are ``{i}.{j}.*``.

    MFEF's chain (``MultiScaleNeck`` then ``DualAttentionNeck``) trains
    through one autograd function that keeps only each branch's input map
    and the gates for backward (:mod:`..kernels.multi_scale_attention`:
    same values and gradients, the activation memory of checkpointing at
    a fraction of its time); other chains run their modules.

    Args:
        cfg (dict | Sequence[dict]): The chain, built once per branch; a
            config without ``in_channels`` gets that branch's channels.
        in_channels (int | Sequence[int] | None): Channels of each branch's
            map (one int: every branch's), as the fusion neck takes them;
            None: every config in ``cfg`` gives its own.
        num_branches (int): N.
        with_cp (bool): Recompute each chain in backward instead of keeping
            its activations (:func:`recompute_in_backward`: BatchNorm
            statistics still move once a step). Saves memory, costs one
            more forward pass of the chains; MFEF's chain needs it not
            (see above). Defaults to False.
    """

    def __init__(self,
                 cfg: Union[dict, Sequence[dict]],
                 in_channels: Union[None, int, Sequence[int]],
                 num_branches: int,
                 with_cp: bool = False):
        cfgs = [cfg] if isinstance(cfg, dict) else list(cfg)
        if not isinstance(in_channels, (list, tuple)):
            in_channels = [in_channels] * num_branches
        if len(in_channels) != num_branches:
            raise ValueError(
                f'FusionPreNecks: in_channels={list(in_channels)} is for '
                f'{len(in_channels)} branches, not {num_branches}.')
        super().__init__([
            Sequential(*[
                MODELS.build(self._with_channels(one, channels))
                for one in cfgs
            ]) for channels in in_channels
        ])
        self.with_cp = bool(with_cp)

    @staticmethod
    def _with_channels(cfg: dict, channels: Optional[int]) -> dict:
        cfg = copy.deepcopy(cfg)
        if 'in_channels' not in cfg and channels is not None:
            cfg['in_channels'] = channels
        return cfg

    def forward(self, maps: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """
        Args:
            maps (Sequence[Tensor]): N maps ``(B, C_i, H_i, W_i)``.

        Returns:
            list[Tensor]: N enhanced maps of the same shapes.
        """
        return [self._enhance(chain, x) for chain, x in zip(self, maps)]

    def _enhance(self, chain: nn.Module, x: torch.Tensor) -> torch.Tensor:
        blocks = [neck.blocks[0] for neck in chain
                  if len(getattr(neck, 'blocks', ())) == 1]
        if len(blocks) == len(chain) and fusable(blocks, x) and \
                x.shape[1] == blocks[0].in_channels:
            return multi_scale_attention(blocks, x)
        if self.with_cp:
            return recompute_in_backward(chain, x)
        return chain(x)
