# Copyright (c) ffl_mm contributors.
"""FFL's fusion module."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList

from ffl_mm.registry import MODELS
from ..utils.recompute import (apply_with_cp, check_with_cp,
                               out_of_place_activations)


@MODELS.register_module()
class FFLFusionNeck(BaseModule):
    """Fuses the last feature maps of N branches into one pooled feature.

    As in FFL (Kim et al., 2020)::

        concat(f_1 .. f_N)                         (B, N·C, H, W)
        -> depthwise 3x3 conv (groups=N·C, no bias) -> BN -> ReLU
        -> 1x1 conv N·C -> out_channels (no bias)   -> BN -> ReLU
        -> global average pooling                  (B, out_channels)

    Branches whose maps differ are aligned first:

    * channels: a branch with ``in_channels[i] != align_channels`` gets a
      1x1 conv (no bias) + BN projecting it to ``align_channels`` (default:
      the largest ``in_channels``); the concatenation then has
      ``N · align_channels`` channels;
    * spatial size: larger maps are average-pooled
      (``adaptive_avg_pool2d``) to the smallest ``H x W`` among the
      branches.

    With equal branches nothing is added, and for two CIFAR ResNet-32
    branches (64 channels) the module has 9,728 parameters, plus 6,500 for
    a CIFAR-100 fused classifier: the authors' 16,228.

    Args:
        in_channels (int | Sequence[int]): Channels of each branch's map;
            an int means all ``num_branches`` branches have that many.
        out_channels (int): Channels of the fused feature. Defaults to the
            largest ``in_channels``.
        num_branches (int, optional): N; needed when ``in_channels`` is an
            int.
        align_channels (int, optional): Common width after projection.
        norm_cfg (dict): Norm layers. Defaults to BN.
        act_cfg (dict): Activations. Defaults to ReLU.
        with_cp (bool | str): The memory switch, as MMPretrain's
            ``with_cp``: ``'selective'`` keeps the convolution and
            normalisation results for backward and recomputes the
            element-wise passes (ReLU, pooling, concatenation);
            ``True`` keeps only the input maps and recomputes everything;
            ``False`` keeps every activation. BatchNorm statistics move
            once a step in every case; values and gradients are the same.
            Defaults to False (figures: docs/benchmarks.md).
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 out_channels: Optional[int] = None,
                 num_branches: Optional[int] = None,
                 align_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 with_cp: Union[bool, str] = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        self.with_cp = check_with_cp(with_cp, 'FFLFusionNeck: with_cp')
        if isinstance(in_channels, int):
            if num_branches is None:
                raise ValueError(
                    'FFLFusionNeck: with an int in_channels, give '
                    'num_branches too (or one in_channels per branch).')
            in_channels = [in_channels] * num_branches
        in_channels = [int(c) for c in in_channels]
        if num_branches is not None and num_branches != len(in_channels):
            raise ValueError(
                f'FFLFusionNeck: num_branches={num_branches} but '
                f'{len(in_channels)} in_channels {in_channels}.')
        if len(in_channels) < 2:
            raise ValueError('FFLFusionNeck fuses at least 2 branches, got '
                             f'in_channels={in_channels}.')
        self.in_channels = in_channels
        self.num_branches = len(in_channels)
        self.align_channels = align_channels or max(in_channels)
        self.out_channels = out_channels or max(in_channels)

        self.projections = ModuleList([
            nn.Identity() if c == self.align_channels else ConvModule(
                c, self.align_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
            for c in in_channels
        ])
        fused = self.num_branches * self.align_channels
        self.depthwise = ConvModule(
            fused,
            fused,
            3,
            padding=1,
            groups=fused,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)
        self.pointwise = ConvModule(
            fused, self.out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        if self.with_cp == 'selective':
            out_of_place_activations(self)

    def fuse(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The fused map before pooling.

        Args:
            inputs (Sequence[Tensor]): N maps ``(B, C_i, H_i, W_i)``.

        Returns:
            Tensor: ``(B, out_channels, min H_i, min W_i)``.
        """
        if len(inputs) != self.num_branches:
            raise ValueError(f'FFLFusionNeck was built for '
                             f'{self.num_branches} branches, got '
                             f'{len(inputs)} feature maps.')
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(
                    f'FFLFusionNeck: branch {i} gives a map of shape '
                    f'{tuple(x.shape)}, expected (B, {c}, H, W); set '
                    'fusion_neck.in_channels to the branches\' channels.')
        return apply_with_cp(self, self.with_cp, *inputs, fn=self._fuse)

    def _fuse(self, *inputs: torch.Tensor) -> torch.Tensor:
        height = min(x.shape[2] for x in inputs)
        width = min(x.shape[3] for x in inputs)
        aligned: List[torch.Tensor] = []
        for x, project in zip(inputs, self.projections):
            if x.shape[2:] != (height, width):
                x = F.adaptive_avg_pool2d(x, (height, width))
            aligned.append(project(x))
        return self.pointwise(self.depthwise(torch.cat(aligned, dim=1)))

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        """
        Args:
            inputs (Sequence[Tensor]): N maps ``(B, C_i, H_i, W_i)``.

        Returns:
            tuple[Tensor]: One pooled feature ``(B, out_channels)``, in the
            tuple form of MMPretrain's necks, for a ``ClsHead``.
        """
        # a mean over the locations (global average pooling): its
        # gradient is a broadcast, which every later pass reads in the
        # convolutions' layout (the CPU pooling's comes back in the
        # default layout, whatever the map's)
        return (self.fuse(inputs).mean(dim=(2, 3)), )
