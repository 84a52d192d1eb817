# Copyright (c) ffl_mm contributors.
"""MFEF's dual attention (channel and spatial gates, CBAM style)."""
from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ffl_mm.registry import MODELS
from .per_map_neck import PerMapNeck

GATES = ('channel', 'spatial')


class ChannelGate(nn.Module):
    """``(B, C, H, W)`` -> weights ``(B, C, 1, 1)`` in (0, 1).

    ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with a shared MLP
    ``C -> max(C // reduction, 1) -> C`` (1x1 convs with bias, ReLU).
    As in CBAM, the maximum is a max pooling: where values tie, the
    gradient goes to one of them.
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the shared MLP once on both statistics, stacked on the batch
        stats = torch.cat(
            [F.adaptive_avg_pool2d(x, 1),
             F.adaptive_max_pool2d(x, 1)])
        # unflatten, not chunk(2): chunking a batch of 2B by a dynamic B
        # makes torch.export fix B (the ONNX export's batch axis)
        avg, peak = self.mlp(stats).unflatten(0, (2, -1)).unbind(0)
        return torch.sigmoid(avg + peak)


class SpatialGate(nn.Module):
    """``(B, C, H, W)`` -> weights ``(B, 1, H, W)`` in (0, 1).

    ``sigmoid(conv_k([mean_c(x), max_c(x)]))``: a ``k x k`` conv (with
    bias) over the channel-wise mean and max maps (gradient of a tied
    maximum to one channel, as in CBAM).
    """

    def __init__(self, kernel_size: int):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError('DualAttentionNeck: kernel_size must be odd, '
                             f'got {kernel_size}.')
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat(
            [x.mean(dim=1, keepdim=True),
             x.max(dim=1, keepdim=True)[0]], dim=1)
        return torch.sigmoid(self.conv(stats))


class DualAttentionBlock(BaseModule):
    """Applies the gates in order: ``x <- x * gate(x)`` for each."""

    def __init__(self, in_channels: int, reduction: int, kernel_size: int,
                 gates: Sequence[str]):
        super().__init__()
        self.in_channels = in_channels
        self.gates = tuple(gates)
        if 'channel' in self.gates:
            self.channel_gate = ChannelGate(in_channels, reduction)
        if 'spatial' in self.gates:
            self.spatial_gate = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for gate in self.gates:
            x = x * getattr(self, f'{gate}_gate')(x)
        return x


@MODELS.register_module()
class DualAttentionNeck(PerMapNeck):
    """Dual attention of MFEF (Zou et al., ICANN 2022), CBAM style.

    Strengthens the important channels, then the important locations, of
    a map: ``x <- x · channel_gate(x)`` (weights ``(B, C, 1, 1)``, one per
    channel) then ``x <- x · spatial_gate(x)`` (weights ``(B, 1, H, W)``,
    one per location); both weights lie in (0, 1). The shape is unchanged;
    a tuple of maps gives a tuple (see :class:`PerMapNeck`), so it is
    usable as an ordinary ``neck=`` too.

    A reconstruction (no public code): the order and each gate are
    switchable through ``gates``. Parameters:
    ``2·C·h + h + C`` (channel MLP, ``h = max(C // reduction, 1)``) plus
    ``2·k² + 1`` (spatial conv).

    Args:
        in_channels (int | Sequence[int]): C (one per map for tuples).
        reduction (int): Channel-MLP reduction. Defaults to 16.
        kernel_size (int): Spatial-gate kernel, odd. Defaults to 7.
        gates (Sequence[str]): Gates in order of application, from
            ``'channel'`` and ``'spatial'``. Defaults to both, channel
            first.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 reduction: int = 16,
                 kernel_size: int = 7,
                 gates: Sequence[str] = GATES,
                 init_cfg=None):
        gates = tuple(gates)
        if not gates or len(set(gates)) != len(gates) or \
                not set(gates) <= set(GATES):
            raise ValueError(f'DualAttentionNeck: gates={gates!r}; use one '
                             "or both of 'channel' and 'spatial', each once.")
        if reduction < 1:
            raise ValueError(f'DualAttentionNeck: reduction={reduction!r} '
                             'must be >= 1.')
        self.reduction = reduction
        self.kernel_size = kernel_size
        self.gates = gates
        super().__init__(in_channels, init_cfg)

    def build_block(self, channels: int) -> nn.Module:
        return DualAttentionBlock(channels, self.reduction, self.kernel_size,
                                  self.gates)
