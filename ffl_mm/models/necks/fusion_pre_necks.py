# Copyright (c) ffl_mm contributors.
"""The per-branch enhancement of the maps to fuse (MFEF)."""
import copy
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import ModuleList, Sequential

from ffl_mm.registry import MODELS
from ..utils.recompute import (apply_with_cp, check_with_cp,
                               out_of_place_activations)


class FusionPreNecks(ModuleList):
    """One chain of necks per branch, applied to that branch's map before
    the fusion neck (MFEF's multi-scale extraction and dual attention).

    Entry ``[i][j]`` is neck ``j`` of branch ``i``, so the state-dict keys
    under a classifier's ``fusion_pre_necks`` are ``{i}.{j}.*``.

    Args:
        cfg (dict | Sequence[dict]): The chain, built once per branch; a
            config without ``in_channels`` gets that branch's channels.
        in_channels (int | Sequence[int] | None): Channels of each branch's
            map (one int: every branch's), as the fusion neck takes them;
            None: every config in ``cfg`` gives its own.
        num_branches (int): N.
        with_cp (bool | str): The memory switch (see
            :class:`FFLFusionNeck`): ``'selective'`` keeps each chain's
            convolution and normalisation results and recomputes its
            element-wise passes (the gates' products, ReLUs, pooling) in
            backward, ``True`` recomputes the whole chain, ``False`` keeps
            every activation. Defaults to False.
    """

    def __init__(self,
                 cfg: Union[dict, Sequence[dict]],
                 in_channels: Union[None, int, Sequence[int]],
                 num_branches: int,
                 with_cp: Union[bool, str] = False):
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
        self.with_cp = check_with_cp(with_cp, 'FusionPreNecks: with_cp')
        if self.with_cp == 'selective':
            out_of_place_activations(self)

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
        return [
            apply_with_cp(chain, self.with_cp, x)
            for chain, x in zip(self, maps)
        ]
