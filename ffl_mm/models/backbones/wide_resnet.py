# Copyright (c) ffl_mm contributors.
"""Wide Residual Networks (Zagoruyko and Komodakis, BMVC 2016)."""
from typing import Sequence

import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch.nn.modules.batchnorm import _BatchNorm

from ffl_mm.registry import MODELS


class WideBasicBlock(BaseModule):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3.

    The shortcut is the identity, or a 1x1 convolution (with the block's
    stride) of the pre-activated input where the shape changes.

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H/s, W/s)``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 drop_rate: float = 0.0,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.conv2 = build_conv_layer(
            conv_cfg, out_channels, out_channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = build_conv_layer(
                conv_cfg, in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x):
        pre = self.relu(self.norm1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.relu(self.norm2(out))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.conv2(out) + identity


@MODELS.register_module()
class WideResNet(BaseBackbone):
    """Wide ResNet WRN-d-k for 32x32 inputs (CIFAR).

    A 3x3 stem of 16 channels, then three stages of ``n = (d - 4) / 6``
    pre-activation blocks of ``16k``, ``32k`` and ``64k`` channels with
    strides 1, 2, 2. The last stage ends with the final BN and ReLU, so
    every stage is self-contained and ffl_mm can share the first stages
    between branches (trunk sharing) like a ResNet's.

    It exposes the same stage interface as MMPretrain's ResNet family:
    ``res_layers`` (``['layer1', 'layer2', 'layer3']``) and
    :meth:`forward_stem`.

    Shapes: input ``(B, 3, 32, 32)``; stage ``i`` outputs
    ``(B, 16k * 2**i, 32 / 2**i, 32 / 2**i)``; WRN-16-2 ends in
    ``(B, 128, 8, 8)``.

    Args:
        depth (int): d, with (d - 4) divisible by 6 (16, 22, 28, 40, ...).
        widen_factor (int): k. Defaults to 1.
        drop_rate (float): Dropout between the convolutions of a block.
        out_indices (Sequence[int]): Stages to output. Defaults to ``(2, )``.
        frozen_stages (int): Stages (with the stem at 0) to freeze; -1 none.
        norm_eval (bool): Keep BN layers in eval mode during training.
        conv_cfg (dict, optional): Convolution config.
        norm_cfg (dict): Normalisation config. Defaults to BN.
        init_cfg (dict | list[dict]): Defaults to Kaiming for convolutions
            and constant 1 for norms.
    """

    def __init__(self,
                 depth: int = 16,
                 widen_factor: int = 1,
                 drop_rate: float = 0.0,
                 out_indices: Sequence[int] = (2, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN', requires_grad=True),
                 init_cfg=[
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm'])
                 ]):
        super().__init__(init_cfg)
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f'WideResNet: depth={depth!r} must be 6n+4 '
                             '(16, 22, 28, 40, ...).')
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError('WideResNet: widen_factor must be a positive '
                             f'int, got {widen_factor!r}.')
        out_indices = tuple(out_indices)
        for index in out_indices:
            if not 0 <= index < 3:
                raise ValueError(f'WideResNet: out_indices {out_indices} '
                                 'must lie in [0, 2].')
        self.depth = depth
        self.widen_factor = widen_factor
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        num_blocks = (depth - 4) // 6
        widths = [16 * widen_factor * 2**i for i in range(3)]

        self.conv1 = build_conv_layer(conv_cfg, 3, 16, 3, 1, 1, bias=False)
        self.res_layers = []
        in_channels = 16
        for i, width in enumerate(widths):
            blocks = [
                WideBasicBlock(
                    in_channels if j == 0 else width,
                    width,
                    stride=(1 if i == 0 else 2) if j == 0 else 1,
                    drop_rate=drop_rate,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg) for j in range(num_blocks)
            ]
            if i == 2:  # the final pre-activation closes the last stage
                blocks += [
                    build_norm_layer(norm_cfg, width)[1],
                    nn.ReLU(inplace=True)
                ]
            layer_name = f'layer{i + 1}'
            self.add_module(layer_name, nn.Sequential(*blocks))
            self.res_layers.append(layer_name)
            in_channels = width
        self.feat_dim = widths[-1]
        self._freeze_stages()

    def forward_stem(self, x):
        """``(B, 3, H, W)`` -> ``(B, 16, H, W)``."""
        return self.conv1(x)

    def forward(self, x):
        x = self.forward_stem(x)
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            for param in self.conv1.parameters():
                param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f'layer{i}')
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
