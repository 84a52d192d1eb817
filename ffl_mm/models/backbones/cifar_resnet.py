# Copyright (c) ffl_mm contributors.
"""The classic CIFAR ResNet of depth 6n+2 (He et al., 2016, Sec. 4.2)."""
from mmpretrain.models.backbones.resnet import BasicBlock
from mmpretrain.models.backbones.resnet_cifar import ResNet_CIFAR
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CIFARResNet(ResNet_CIFAR):
    """Classic CIFAR ResNet-20/32/44/56/110/1202 with BasicBlocks.

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
        depth (int): 6n+2 with n in {3, 5, 7, 9, 18, 200}: 20, 32, 44, 56,
            110 or 1202.
        out_indices (Sequence[int]): Stages to output. Defaults to ``(2, )``.
        zero_init_residual (bool): Zero-init the last BN of each block.
            Defaults to False, as in the reference implementations.
        **kwargs: Any other argument of :class:`mmpretrain.models.ResNet`.
    """

    arch_settings = {
        20: (BasicBlock, (3, 3, 3)),
        32: (BasicBlock, (5, 5, 5)),
        44: (BasicBlock, (7, 7, 7)),
        56: (BasicBlock, (9, 9, 9)),
        110: (BasicBlock, (18, 18, 18)),
        1202: (BasicBlock, (200, 200, 200)),
    }

    def __init__(self,
                 depth,
                 out_indices=(2, ),
                 zero_init_residual=False,
                 **kwargs):
        if depth not in self.arch_settings:
            raise ValueError(
                f'CIFARResNet: depth={depth!r} is not 6n+2 with a known n; '
                f'use one of {sorted(self.arch_settings)}.')
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
