# Copyright (c) ffl_mm contributors.
"""FFL's fusion module."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList

from ffl_mm.registry import MODELS
from ..kernels.fusion_convs import fusion_convs, fusion_convs_fusable
from ..kernels.memory_layout import concat_maps, memory_format_of


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
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 out_channels: Optional[int] = None,
                 num_branches: Optional[int] = None,
                 align_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
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
        height = min(x.shape[2] for x in inputs)
        width = min(x.shape[3] for x in inputs)
        aligned: List[torch.Tensor] = []
        for x, project in zip(inputs, self.projections):
            if x.shape[2:] != (height, width):
                x = F.adaptive_avg_pool2d(x, (height, width))
            aligned.append(project(x))
        # oneDNN's depthwise convolution is many times faster on
        # channels-last data than on the default layout (same values):
        # on the CPU the concatenation is written in channels-last; the
        # branches get their gradients back in their own layout
        layout = torch.channels_last if aligned[0].device.type == 'cpu' \
            else memory_format_of(aligned[0])
        fused = concat_maps(aligned, layout)
        if fusion_convs_fusable(self.depthwise, self.pointwise, fused):
            # the same sums; keeps two maps of this size fewer for backward
            return fusion_convs(self.depthwise, self.pointwise, fused)
        return self.pointwise(self.depthwise(fused))

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        """
        Args:
            inputs (Sequence[Tensor]): N maps ``(B, C_i, H_i, W_i)``.

        Returns:
            tuple[Tensor]: One pooled feature ``(B, out_channels)``, in the
            tuple form of MMPretrain's necks, for a ``ClsHead``.
        """
        fused = self.fuse(inputs)
        return (F.adaptive_avg_pool2d(fused, 1).flatten(1), )
