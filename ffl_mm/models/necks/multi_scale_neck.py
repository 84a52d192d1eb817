# Copyright (c) ffl_mm contributors.
"""MFEF's multi-scale feature extraction (divide and concatenate)."""
from typing import Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList

from ffl_mm.registry import MODELS
from .per_map_neck import PerMapNeck


class MultiScaleBlock(BaseModule):
    """Divide-and-concatenate on one map ``(B, C, H, W)`` -> same shape.

    The C channels are split into ``scales`` groups ``x_1 .. x_s``;
    ``y_1 = x_1`` and ``y_i = conv_i(x_i)`` (3x3 conv, BN, ReLU), or
    ``y_i = conv_i(x_i + y_{i-1})`` when ``hierarchical`` (Res2Net style,
    so later groups see ever larger receptive fields). The groups are
    concatenated back to C channels, plus ``x`` when ``residual``.
    """

    def __init__(self, in_channels: int, scales: int, hierarchical: bool,
                 residual: bool, norm_cfg: dict, act_cfg: dict):
        super().__init__()
        if scales < 2 or in_channels % scales:
            raise ValueError(
                f'MultiScaleNeck: in_channels={in_channels} must split into '
                f'scales={scales} equal groups (scales >= 2 dividing the '
                'channels).')
        self.in_channels = in_channels
        self.scales = scales
        self.hierarchical = hierarchical
        self.residual = residual
        width = in_channels // scales
        self.width = width
        if hierarchical:
            # each group waits for the previous one: s - 1 convolutions
            self.convs = ModuleList([
                ConvModule(
                    width,
                    width,
                    3,
                    padding=1,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg) for _ in range(scales - 1)
            ])
        else:
            # independent groups 2..s: one grouped convolution (same
            # weights and BN channels as s - 1 separate ones, 3 ops
            # instead of 3 (s - 1))
            self.grouped = ConvModule(
                in_channels - width,
                in_channels - width,
                3,
                padding=1,
                groups=scales - 1,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hierarchical:
            # one split (its backward is one concatenation, where two
            # slices would each fill a zero map of x's size)
            first, rest = x.split(
                [self.width, self.in_channels - self.width], dim=1)
            if self.residual:
                # cat([x_1, g(rest)]) + x without a full-size addition
                return torch.cat([first * 2, self.grouped(rest) + rest],
                                 dim=1)
            return torch.cat([first, self.grouped(rest)], dim=1)
        else:
            groups = torch.split(x, self.width, dim=1)
            outs = [groups[0]]
            for group, conv in zip(groups[1:], self.convs):
                if len(outs) > 1:
                    group = group + outs[-1]
                outs.append(conv(group))
            out = torch.cat(outs, dim=1)
        return out + x if self.residual else out


@MODELS.register_module()
class MultiScaleNeck(PerMapNeck):
    """Multi-scale feature extraction of MFEF (Zou et al., ICANN 2022).

    Divide and concatenate along the channel dimension, as a neck: split
    the ``in_channels`` channels of a map into ``scales`` groups, convolve
    groups 2..s (3x3 conv + BN + ReLU, optionally adding the previous
    group's output first), concatenate back to C channels and optionally
    add the input. The shape is unchanged: ``(B, C, H, W)`` ->
    ``(B, C, H, W)``; a tuple of maps gives a tuple (see
    :class:`PerMapNeck`), so it also fits before ``GlobalAveragePooling``
    in any MMPretrain classifier.

    The paper publishes no code; this is a reconstruction, and every
    choice is an argument. Parameters: ``(scales - 1) · (9 · w² + 2 · w)``
    with ``w = C / scales`` (no conv biases).

    Args:
        in_channels (int | Sequence[int]): C (one per map for tuples).
        scales (int): s >= 2, dividing C. Defaults to 4.
        hierarchical (bool): Res2Net-style ``x_i + y_{i-1}``. Defaults to
            False.
        residual (bool): Add the input to the output. Defaults to True.
        norm_cfg (dict): Defaults to BN.
        act_cfg (dict): Defaults to ReLU.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 scales: int = 4,
                 hierarchical: bool = False,
                 residual: bool = True,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg=None):
        self.scales = scales
        self.hierarchical = hierarchical
        self.residual = residual
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        super().__init__(in_channels, init_cfg)

    def build_block(self, channels: int) -> nn.Module:
        return MultiScaleBlock(channels, self.scales, self.hierarchical,
                               self.residual, self.norm_cfg, self.act_cfg)
