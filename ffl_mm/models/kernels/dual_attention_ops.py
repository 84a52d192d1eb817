# Copyright (c) ffl_mm contributors.
"""The full-size steps of channel-then-spatial attention as autograd
functions that keep only what their backward needs.

``DualAttentionBlock`` computes, for a map ``x`` ``(B, C, H, W)``::

    a, m = mean_hw(x), max_hw(x)          (B, C, 1, 1)  channel_stats
    c    = sigmoid(mlp(a) + mlp(m))       (B, C, 1, 1)  small, autograd
    y    = x * c                          (B, C, H, W)  gated_spatial_stats
    s    = [mean_c(y), max_c(y)]          (B, 2, H, W)
    g    = sigmoid(conv(s))               (B, 1, H, W)  small, autograd
    out  = y * g                          (B, C, H, W)  gated_product

Written with PyTorch's operators, autograd keeps ``x``, ``y``, a zero
map per max and an accumulation per use of ``x``; these functions keep
``x`` and the small tensors only (``y`` is recomputed from ``x * c`` in
backward, one multiplication) and take their maxima's gradients by a
scatter into the gradient they already build. The values and gradients
are those of the plain formulas (up to the order of float additions).
Under ``torch.compile`` the blocks use the plain formulas, which the
compiler fuses itself.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd import Function


def location_stats(x: torch.Tensor):
    """Mean and max over the locations of ``x`` ``(B, C, H, W)``: two
    ``(B, C, 1, 1)`` and the argmax ``(B, C)`` (the first maximum, as
    max pooling takes it)."""
    flat = x.flatten(2)
    peak, index = flat.max(dim=2)
    return flat.mean(dim=2)[..., None, None], peak[..., None, None], index


def location_stats_grad(grad_avg: torch.Tensor, grad_peak: torch.Tensor,
                        index: torch.Tensor, shape: torch.Size,
                        into: Optional[torch.Tensor] = None,
                        times: Optional[torch.Tensor] = None
                        ) -> torch.Tensor:
    """The gradient of :func:`location_stats` for a map of ``shape``:
    the mean's spread evenly, the max's at its argmax; when ``into`` and
    ``times`` are given, added to ``into * times`` (``times`` broadcast; a
    new tensor, one pass for both)."""
    b, c, h, w = shape
    spread = grad_avg / (h * w)
    if into is None:
        into = spread.expand(b, c, h, w).contiguous()
    else:
        into = torch.addcmul(spread, into, times)
    into.view(b, c, h * w).scatter_add_(2, index[..., None],
                                        grad_peak.reshape(b, c, 1))
    return into


def channel_stats_of(y: torch.Tensor):
    """The channel mean and max of ``y`` ``(B, C, H, W)`` as
    ``(B, 2, H, W)``, and the argmax ``(B, 1, H, W)``."""
    peak, index = y.max(dim=1, keepdim=True)
    return torch.cat([y.mean(dim=1, keepdim=True), peak], dim=1), index


def add_channel_stats_grad(grad_y: torch.Tensor, grad_stats: torch.Tensor,
                           index: torch.Tensor,
                           times: Optional[torch.Tensor] = None
                           ) -> torch.Tensor:
    """``grad_y`` (or ``grad_y * times``, ``times`` broadcast, in one pass
    with the addition) plus the gradient of :func:`channel_stats_of` for
    ``grad_stats`` ``(B, 2, H, W)``, in a new tensor."""
    mean_part = grad_stats[:, :1] / grad_y.shape[1]
    if times is None:
        grad_y = grad_y + mean_part
    else:
        grad_y = torch.addcmul(mean_part, grad_y, times)
    return grad_y.scatter_add_(1, index, grad_stats[:, 1:])


class _ChannelStats(Function):

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        avg, peak, index = location_stats(x)
        ctx.save_for_backward(index)
        ctx.shape = x.shape
        return avg, peak

    @staticmethod
    def backward(ctx, grad_avg: torch.Tensor, grad_peak: torch.Tensor):
        index, = ctx.saved_tensors
        return location_stats_grad(grad_avg, grad_peak, index, ctx.shape)


class _GatedSpatialStats(Function):

    @staticmethod
    def forward(ctx, x: torch.Tensor, gate: torch.Tensor):
        y = x * gate
        stats, index = channel_stats_of(y)
        ctx.save_for_backward(x, gate, index)
        return y, stats

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, grad_stats: torch.Tensor):
        x, gate, index = ctx.saved_tensors
        grad_y = add_channel_stats_grad(grad_y, grad_stats, index)
        grad_gate = (grad_y * x).sum(dim=(2, 3), keepdim=True)
        return grad_y * gate, grad_gate


class _GatedProduct(Function):

    @staticmethod
    def forward(ctx, y: torch.Tensor, x: torch.Tensor, gate: torch.Tensor,
                spatial: torch.Tensor):
        ctx.save_for_backward(x, gate, spatial)
        return y * spatial

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, gate, spatial = ctx.saved_tensors
        y = x * gate
        grad_spatial = (grad_out * y).sum(dim=1, keepdim=True)
        return grad_out * spatial, None, None, grad_spatial


def channel_stats(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and max over the locations: ``(B, C, H, W)`` -> two
    ``(B, C, 1, 1)``. Backward keeps only the argmax (a tied maximum
    sends its gradient to one location, as max pooling does); under
    ``torch.compile``, the plain operators."""
    if torch.compiler.is_compiling():
        return x.mean(dim=(2, 3), keepdim=True), F.adaptive_max_pool2d(x, 1)
    return _ChannelStats.apply(x)


def gated_spatial_stats(x: torch.Tensor, gate: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``y = x * gate`` ``(B, C, H, W)`` and its channel mean and max
    ``(B, 2, H, W)``; keeps ``x``, ``gate`` ``(B, C, 1, 1)`` and the
    argmax, not ``y``."""
    return _GatedSpatialStats.apply(x, gate)


def gated_product(y: torch.Tensor, x: torch.Tensor, gate: torch.Tensor,
                  spatial: torch.Tensor) -> torch.Tensor:
    """``y * spatial`` for ``y = x * gate`` (from
    :func:`gated_spatial_stats`), keeping ``x``, ``gate`` and
    ``spatial`` ``(B, 1, H, W)`` instead of ``y`` (recomputed in
    backward)."""
    return _GatedProduct.apply(y, x, gate, spatial)


#: Largest H * W for which :func:`small_map_conv2d` multiplies by the
#: convolution's matrix (``2 (H W)^2`` entries per input channel pair).
SMALL_MAP = 256
_INDEX_CACHE: Dict[tuple, torch.Tensor] = {}


def _conv_matrix_index(in_channels: int, h: int, w: int, k: int,
                       device: torch.device) -> torch.Tensor:
    """For each (input channel, input location, output location), the
    index of the kernel weight joining them in the flattened
    ``(1, in_channels, k, k)`` weight, or ``in_channels * k * k`` (a zero)
    where the kernel does not reach (zero padding ``k // 2``)."""
    key = (in_channels, h, w, k, str(device))
    if key not in _INDEX_CACHE:
        r = k // 2
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w),
                                indexing='ij')
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + r  # (input q, output p)
        dx = xs[:, None] - xs[None, :] + r
        inside = (dy >= 0) & (dy < k) & (dx >= 0) & (dx < k)
        tap = torch.where(inside, dy * k + dx, torch.full_like(dy, -1))
        channel = torch.arange(in_channels)[:, None, None] * k * k
        index = torch.where(tap >= 0, channel + tap,
                            torch.full_like(tap, in_channels * k * k))
        _INDEX_CACHE[key] = index.reshape(-1).to(device)
    return _INDEX_CACHE[key]


def conv_matrix(weight: torch.Tensor, h: int, w: int):
    """The ``(C_in H W, H W)`` matrix of a ``(1, C_in, k, k)`` convolution
    (zero padding ``k // 2``) on ``H x W`` maps, and the index it was
    gathered with (entry ``C_in k k`` is a zero)."""
    c, k = weight.shape[1], weight.shape[-1]
    index = _conv_matrix_index(c, h, w, k, weight.device)
    taps = torch.cat([weight.reshape(-1), weight.new_zeros(1)])
    return taps[index].view(c * h * w, h * w), index


def by_matrix(h: int, w: int) -> bool:
    """Whether :func:`small_map_conv2d` multiplies ``H x W`` maps by the
    convolution's matrix: small maps, outside ``torch.compile`` (the
    matrix's index cache is Python state that a graph cannot hold; the
    compiler compiles the convolution)."""
    return h * w <= SMALL_MAP and not torch.compiler.is_compiling()


def small_map_conv2d(x: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor,
                     matrix: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A ``k x k`` convolution to one channel with zero padding ``k//2``
    (stride 1): ``(B, C_in, H, W)`` -> ``(B, 1, H, W)``.

    On small maps (``H * W <= SMALL_MAP``) it multiplies by the
    convolution's ``(C_in H W, H W)`` matrix, gathered from the weight:
    the same sums, one matrix product instead of a convolution whose
    single output channel CPU kernels handle slowly. Larger maps, and
    all under ``torch.compile`` (which compiles the convolution), use
    ``F.conv2d``. ``matrix``: the weight's :func:`conv_matrix` for these
    maps, if the caller has it.
    """
    b, c, h, w = x.shape
    k = weight.shape[-1]
    if weight.shape[0] != 1 or not by_matrix(h, w):
        return F.conv2d(x, weight, bias, padding=k // 2)
    if matrix is None:
        matrix, _ = conv_matrix(weight, h, w)
    return torch.addmm(bias, x.reshape(b, c * h * w), matrix).view(b, 1, h, w)
