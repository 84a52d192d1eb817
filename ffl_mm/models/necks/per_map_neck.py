# Copyright (c) ffl_mm contributors.
"""Base class of necks that transform each feature map on its own."""
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule, ModuleList


class PerMapNeck(BaseModule):
    """Applies one block per feature map, keeping the input's form.

    A tensor ``(B, C, H, W)`` gives a tensor of the same shape; a tuple of
    maps (an MMPretrain backbone's outputs) gives a tuple, each map through
    its own block. With an int ``in_channels`` the neck expects one map
    (or a 1-tuple); with a sequence, one map per entry.

    Subclasses implement :meth:`build_block`.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 init_cfg=None):
        super().__init__(init_cfg)
        name = type(self).__name__
        single = isinstance(in_channels, int)
        channels = [in_channels] if single else list(in_channels)
        if not channels or any(
                not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f'{name}: in_channels must be a positive int or '
                             f'a sequence of them, got {in_channels!r}.')
        self.in_channels = in_channels
        self.blocks = ModuleList([self.build_block(c) for c in channels])

    def build_block(self, channels: int) -> nn.Module:
        """The block for one map of ``channels`` channels."""
        raise NotImplementedError

    def forward(
        self, inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]]
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """
        Args:
            inputs (Tensor | tuple[Tensor]): ``(B, C_i, H_i, W_i)`` maps.

        Returns:
            Tensor | tuple[Tensor]: The same form and shapes.
        """
        if isinstance(inputs, torch.Tensor):
            return self._forward_map(0, inputs, count=1)
        if not isinstance(inputs, (tuple, list)):
            raise TypeError(f'{type(self).__name__} takes a tensor or a '
                            f'tuple of tensors, got {type(inputs)}.')
        return tuple(
            self._forward_map(i, x, count=len(inputs))
            for i, x in enumerate(inputs))

    def _forward_map(self, index: int, x: torch.Tensor, count: int):
        name = type(self).__name__
        if count != len(self.blocks):
            raise ValueError(
                f'{name} was built for {len(self.blocks)} map(s) '
                f'(in_channels={self.in_channels}) but got {count}; give '
                'one in_channels per map.')
        channels = self.blocks[index].in_channels
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f'{name}: map {index} has shape '
                             f'{tuple(x.shape)}, expected (B, {channels}, H, '
                             'W).')
        return self.blocks[index](x)
