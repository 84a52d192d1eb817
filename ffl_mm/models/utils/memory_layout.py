# Copyright (c) ffl_mm contributors.
"""A memory-layout change that stays inside the module that makes it."""
import torch
from torch.autograd import Function


class _ChannelsLastInside(Function):

    # applied only to tensors that are not channels-last already

    @staticmethod
    def forward(ctx, x):
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def channels_last_inside(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the channels-last layout, whose gradient goes back in the
    default layout unless ``x`` was channels-last already.

    ``Tensor.contiguous(memory_format=...)`` passes the gradient through
    in the new layout: the layers before it, which keep the default
    layout, would then mix two layouts in every element-wise pass of
    their backward (several times slower on the CPU than one layout).

    Args:
        x (Tensor): ``(B, C, H, W)``.

    Returns:
        Tensor: ``x``'s values, ``(B, C, H, W)`` channels-last.
    """
    if x.is_contiguous(memory_format=torch.channels_last):
        return x
    if not torch.is_grad_enabled() or not x.requires_grad or \
            torch.compiler.is_compiling():
        # no backward, or the compiler chooses layouts itself
        return x.contiguous(memory_format=torch.channels_last)
    return _ChannelsLastInside.apply(x)
