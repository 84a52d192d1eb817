# Copyright (c) ffl_mm contributors.
"""The classic CIFAR ResNet of depth 6n+2 (He et al., 2016, Sec. 4.2)."""
from typing import Tuple, Type

from mmpretrain.models.backbones.resnet import BasicBlock
from mmpretrain.models.backbones.resnet_cifar import ResNet_CIFAR

from ffl_mm.registry import MODELS


class _SixNPlusTwo:
    """``arch_settings`` for every depth 6n+2 (n >= 1): three stages of n
    BasicBlocks. MMPretrain's ``ResNet`` only asks ``depth in`` and
    ``[depth]`` of it."""

    def __contains__(self, depth) -> bool:
        return isinstance(depth, int) and not isinstance(depth, bool) and \
            depth >= 8 and (depth - 2) % 6 == 0

    def __getitem__(self, depth: int) -> Tuple[Type[BasicBlock], tuple]:
        if depth not in self:
            raise KeyError(depth)
        n = (depth - 2) // 6
        return BasicBlock, (n, n, n)


@MODELS.register_module()
class CIFARResNet(ResNet_CIFAR):
    """Classic CIFAR ResNet-8/14/20/32/44/56/110/... with BasicBlocks.

    MMPretrain's ``ResNet_CIFAR`` is an ImageNet ResNet (18/34/50, four
    stages of 64-512 channels) with a CIFAR stem. This is the original
    6n+2 family that FFL and most online-KD papers use: a 3x3 stem of 16
    channels, then three stages of ``n`` BasicBlocks with 16, 32 and 64
    channels and strides 1, 2, 2. Where a stage changes, the shortcut is a
    1x1 convolution with stride 2 followed by BN (as in the FFL authors'
    code), which is MMPretrain's ``ResLayer`` downsample. ResNet-32 for
    CIFAR-100 (with ``GlobalAveragePooling`` and ``LinearClsHead``) has
    472,756 parameters, the authors' count.

    Being an MMPretrain ``ResNet``, it keeps every option of that class
    (``frozen_stages``, ``norm_eval``, ``with_cp``, ``drop_path_rate``, ...)
    and the ``res_layers`` stage list that ffl_mm's trunk sharing splits.

    Shapes: input ``(B, 3, 32, 32)``; stage ``i`` outputs
    ``(B, 16 * 2**i, 32 / 2**i, 32 / 2**i)``, i.e. ``(B, 64, 8, 8)`` last.

    Args:
        depth (int): 6n+2 with n >= 1: 8, 14, 20, 26, 32, 44, 56, 110, ...
            (n BasicBlocks per stage).
        out_indices (Sequence[int]): Stages to output. Defaults to ``(2, )``.
        zero_init_residual (bool): Zero-init the last BN of each block.
            Defaults to False, as in the reference implementations.
        **kwargs: Any other argument of :class:`mmpretrain.models.ResNet`.
    """

    arch_settings = _SixNPlusTwo()

    def __init__(self,
                 depth,
                 out_indices=(2, ),
                 zero_init_residual=False,
                 **kwargs):
        if depth not in self.arch_settings:
            raise ValueError(
                f'CIFARResNet: depth={depth!r} is not 6n+2 with n >= 1; '
                'use 8, 14, 20, 26, 32, 44, 56, 110, ... (n BasicBlocks per '
                'stage).')
        kwargs.setdefault('stem_channels', 16)
        kwargs.setdefault('base_channels', 16)
        kwargs.setdefault('num_stages', 3)
        kwargs.setdefault('strides', (1, 2, 2))
        kwargs.setdefault('dilations', (1, 1, 1))
        super().__init__(
            depth,
            out_indices=out_indices,
            zero_init_residual=zero_init_residual,
            **kwargs)
