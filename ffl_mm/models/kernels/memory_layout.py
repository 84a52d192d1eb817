# Copyright (c) ffl_mm contributors.
"""Memory layouts of maps: which one a tensor has, and a concatenation
whose gradients go back in each input's own layout.

An element-wise pass over two maps of different layouts (the default
``NCHW`` and channels-last ``NHWC``) cannot walk both tensors' memory in
order: on the CPU it takes a slow path, several times slower than over
one layout. The fused autograd functions therefore bring an incoming
gradient to the layout of the tensors they saved, once, before their
passes (:func:`in_layout_of`).
"""
from functools import reduce
from typing import Sequence

import torch
from torch.autograd import Function


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-D tensor whose dimensions lie in
    memory in ``N, H, W, C`` order (a channel slice of a channels-last
    tensor included), else ``torch.contiguous_format``."""
    if x.dim() == 4 and x.shape[1] > 1 and x.stride(1) < x.stride(3) \
            and x.shape[2] * x.shape[3] > 1:
        return torch.channels_last
    return torch.contiguous_format


def in_layout(x: torch.Tensor,
              memory_format: torch.memory_format) -> torch.Tensor:
    """``x`` with its dimensions in memory in ``memory_format``'s order:
    itself (a slice with gaps included: element-wise passes walk it in
    order) or a dense copy."""
    if memory_format_of(x) == memory_format:
        return x
    return x.contiguous(memory_format=memory_format)


def in_layout_of(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """:func:`in_layout` in ``like``'s layout."""
    return in_layout(x, memory_format_of(like))


def _concat_into(maps: Sequence[torch.Tensor],
                 memory_format: torch.memory_format) -> torch.Tensor:
    """``torch.cat(maps, dim=1)`` written once, in ``memory_format``."""
    b, _, h, w = maps[0].shape
    out = torch.empty((b, sum(x.shape[1] for x in maps), h, w),
                      dtype=reduce(torch.promote_types,
                                   (x.dtype for x in maps)),
                      device=maps[0].device, memory_format=memory_format)
    return torch.cat(maps, dim=1, out=out)


class _ConcatMaps(Function):

    @staticmethod
    def forward(ctx, memory_format, *maps):
        ctx.channels = [x.shape[1] for x in maps]
        ctx.formats = [memory_format_of(x) for x in maps]
        return _concat_into(maps, memory_format)

    @staticmethod
    def backward(ctx, grad):
        # (a slice in the input's layout stays a view)
        return (None, *(in_layout(part, memory_format) for part, memory_format
                        in zip(grad.split(ctx.channels, dim=1),
                               ctx.formats)))


def concat_maps(maps: Sequence[torch.Tensor],
                memory_format: torch.memory_format) -> torch.Tensor:
    """The maps concatenated along the channels, in ``memory_format``,
    with each map's gradient in that map's own layout.

    ``torch.cat`` followed by ``Tensor.contiguous(memory_format=...)``
    writes the maps twice and passes the gradient back in the new
    layout: the layers before it, which keep theirs, would then mix two
    layouts in every element-wise pass of their backward.

    Args:
        maps (Sequence[Tensor]): Maps ``(B, C_i, H, W)``.
        memory_format (torch.memory_format): The output's layout.

    Returns:
        Tensor: ``(B, sum C_i, H, W)``.
    """
    maps = list(maps)
    if torch.compiler.is_compiling():
        # the compiler chooses layouts itself
        return torch.cat(maps, dim=1).contiguous(memory_format=memory_format)
    if torch.is_grad_enabled() and any(x.requires_grad for x in maps):
        return _ConcatMaps.apply(memory_format, *maps)
    return _concat_into(maps, memory_format)
