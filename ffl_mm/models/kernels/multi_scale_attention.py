# Copyright (c) ffl_mm contributors.
"""MFEF's enhancement of one map (multi-scale block, then dual attention)
as one autograd function that keeps the input map, the convolution's
output and small tensors only.

Through PyTorch's operators, autograd keeps for backward the grouped
convolution's output, the ReLU's output and the multi-scale block's
output (the attention's input): 2.5 maps of the input's size per
branch. Activation checkpointing keeps only the input but runs the chain
forward twice. This function keeps the input, the grouped convolution's
output ((s-1)/s of a map), the BatchNorm statistics and the gates
(``(B, C)``, ``(B, H, W)`` sized), and in backward recomputes the
normalisation (with the statistics of the forward pass: running
statistics move once) and the products, not the convolution (the
costliest part to redo) nor the gates; the small
gate networks (channel MLP, spatial convolution) are re-run on their
saved inputs for their gradients (by hand: two small matrix products
each, where a nested autograd call cost more than they do).

Values and gradients are those of the modules (up to the order of float
additions); the MFEF tests compare them. Used in training with
gradients, for a non-hierarchical ``MultiScaleBlock`` with BN and ReLU
followed by a channel-then-spatial ``DualAttentionBlock``, without
autocast, synchronised BN, hooks or re-parametrised weights
(:func:`fusable`); anything else runs the modules.

Under ``torch.compile`` the function is traced whole, its backward
included: the compiler fuses its passes and starts from what it saves
instead of from what the modules' autograd would keep (the compiler
still chooses the saved set; figures in ``docs/benchmarks.md``). There
the spatial gate's convolution runs as a convolution (the matrix's
index cache is Python state a graph cannot hold) and the multi-scale
block's output is one concatenation, which the compiler writes once.
"""
from typing import Sequence

import torch
import torch.nn as nn
from torch.autograd import Function

from .conv_bn_relu_ops import (autocast_on, batch_norm_affine,
                               batch_norm_backward, batch_norm_train,
                               conv_backward, conv_bn_relu_fusable,
                               conv_forward)
from .dual_attention_ops import (add_channel_stats_grad, by_matrix,
                                 channel_stats_of, conv_matrix,
                                 location_stats, location_stats_grad,
                                 small_map_conv2d)
from .memory_layout import in_layout_of, memory_format_of
from .plain_modules import plain_modules


def fusable(blocks: Sequence[nn.Module], x: torch.Tensor) -> bool:
    """Whether :func:`multi_scale_attention` computes ``blocks`` on
    ``x``."""
    if len(blocks) != 2 or not torch.is_grad_enabled():
        return False
    ms, da = blocks
    if type(ms).__name__ != 'MultiScaleBlock' or ms.hierarchical or \
            type(da).__name__ != 'DualAttentionBlock' or \
            da.gates != ('channel', 'spatial'):
        return False
    mlp = da.channel_gate.mlp
    if len(mlp) != 3 or not isinstance(mlp[1], nn.ReLU) or any(
            not isinstance(m, nn.Conv2d) or m.bias is None
            or m.kernel_size != (1, 1) for m in (mlp[0], mlp[2])):
        return False
    return ms.training and conv_bn_relu_fusable(ms.grouped) and \
        x.dim() == 4 and not autocast_on(x) and plain_modules(ms, da)


def _gates_forward(da, m):
    """The attention's forward: output, the tensors backward needs and
    the spatial convolution's matrix (``None`` on large maps and under
    ``torch.compile``, see :func:`.dual_attention_ops.small_map_conv2d`),
    which backward reuses."""
    avg, peak, peak_index = location_stats(m)
    gate = da.channel_gate.from_stats(avg, peak)
    y = m * gate
    stats, top_index = channel_stats_of(y)
    conv = da.spatial_gate.conv
    h, w = stats.shape[2:]
    matrix = conv_matrix(conv.weight, h, w) if by_matrix(h, w) else None
    spatial = torch.sigmoid(small_map_conv2d(
        stats, conv.weight, conv.bias,
        matrix=None if matrix is None else matrix[0]))
    return y.mul_(spatial), (avg, peak, peak_index, gate, stats, top_index,
                             spatial), matrix


def _spatial_gate_backward(spatial_gate, stats, spatial, grad_spatial,
                           grads, matrix=None):
    """Gradient of ``spatial = sigmoid(conv(stats))`` for ``stats``
    ``(B, 2, H, W)``; the conv's parameter gradients go into ``grads``.
    By hand with the convolution's ``matrix`` where forward used it
    (:func:`.dual_attention_ops.by_matrix`), else by the convolution's
    backward."""
    conv = spatial_gate.conv
    b, c, h, w = stats.shape
    if matrix is None:
        return conv_backward(conv, grad_spatial * spatial * (1 - spatial),
                             stats, True, grads)
    matrix, index = matrix
    sig = spatial.reshape(b, h * w)
    grad_pre = grad_spatial.reshape(b, h * w) * sig * (1 - sig)
    flat = stats.reshape(b, c * h * w)
    grad_taps = conv.weight.new_zeros(conv.weight.numel() + 1).index_add_(
        0, index, (flat.t() @ grad_pre).reshape(-1))
    grads[conv.weight] = grad_taps[:-1].view_as(conv.weight)
    grads[conv.bias] = grad_pre.sum().reshape(1)
    return (grad_pre @ matrix.t()).view_as(stats)


def _channel_gate_backward(channel_gate, avg, peak, gate, grad_gate,
                           grads):
    """Gradient of ``gate = sigmoid(mlp(avg) + mlp(peak))`` (1x1 conv,
    ReLU, 1x1 conv, with biases) for ``avg`` and ``peak``
    ``(B, C, 1, 1)``; the MLP's parameter gradients go into ``grads``."""
    first, _, second = channel_gate.mlp
    b = avg.shape[0]
    w1 = first.weight.flatten(1)  # (h, C)
    w2 = second.weight.flatten(1)  # (C, h)
    inputs = torch.cat([avg, peak]).flatten(1)  # (2B, C)
    hidden = torch.addmm(first.bias, inputs, w1.t())
    active = hidden > 0
    sig = gate.flatten(1)
    grad_pre = grad_gate.flatten(1) * sig * (1 - sig)  # (B, C)
    grad_out = torch.cat([grad_pre, grad_pre])  # both statistics
    grads[second.weight] = (grad_out.t() @ hidden.clamp_(min=0)).view_as(
        second.weight)
    grads[second.bias] = grad_out.sum(dim=0)
    grad_hidden = (grad_out @ w2).mul_(active)
    grads[first.weight] = (grad_hidden.t() @ inputs).view_as(first.weight)
    grads[first.bias] = grad_hidden.sum(dim=0)
    grad_inputs = (grad_hidden @ w1).view(2 * b, -1, 1, 1)
    return grad_inputs[:b], grad_inputs[b:]


def _assemble(ms, like: torch.Tensor, first: torch.Tensor,
              rest: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
    """``cat([2 first, rest + addend])`` (residual) or ``cat([first,
    rest])``, each part written once into a new tensor like ``like``
    (under ``torch.compile``, where dynamo takes no ``out=`` slices, one
    concatenation that the compiler writes once)."""
    if torch.compiler.is_compiling():
        return torch.cat([first * 2, rest + addend] if ms.residual else
                         [first, rest], dim=1)
    out = torch.empty_like(like)
    head, tail = out.split([ms.width, ms.in_channels - ms.width], dim=1)
    if ms.residual:
        torch.mul(first, 2, out=head)
        torch.add(rest, addend, out=tail)
    else:
        head.copy_(first)
        tail.copy_(rest)
    return out


class _MultiScaleAttention(Function):

    @staticmethod
    def forward(ctx, ms, da, x, *params):
        first, rest = x.split([ms.width, ms.in_channels - ms.width], dim=1)
        c = conv_forward(ms.grouped.conv, rest)
        z, mean, invstd = batch_norm_train(ms.grouped.norm, c)
        r = z.clamp_(min=0)
        m = _assemble(ms, x, first, r, rest)
        del z, r
        out, saved, ctx.matrix = _gates_forward(da, m)
        ctx.blocks, ctx.params = (ms, da), params
        if torch.compiler.is_compiling():
            # dynamo takes no views of the function's own tensors into
            # backward (the channel statistics and gate are views):
            # copies, small next to a map
            saved = tuple(t.clone() for t in saved)
        ctx.save_for_backward(x, c, mean, invstd, *saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        ms, da = ctx.blocks
        (x, c, mean, invstd, avg, peak, peak_index, gate, stats, top_index,
         spatial) = ctx.saved_tensors
        conv, bn = ms.grouped.conv, ms.grouped.norm
        width = ms.width
        # every pass below in the input's layout
        grad_out = in_layout_of(grad_out, x)
        # the multi-scale block's output again from the convolution's,
        # with the forward's batch statistics (one pass: c * scale + shift)
        first, rest = x.split([width, ms.in_channels - width], dim=1)
        scale, shift = batch_norm_affine(bn, mean, invstd)
        r = torch.addcmul(shift, c, scale).clamp_(min=0)
        m = _assemble(ms, x, first, r, rest)
        b, channels, h, w = m.shape
        # out = y * spatial with y = m * gate: d spatial = sum_c g m gate
        product = grad_out * m
        grad_spatial = torch.bmm(
            gate.reshape(b, 1, channels),
            product.reshape(b, channels, h * w)).view(b, 1, h, w)
        grads = {}
        grad_stats = _spatial_gate_backward(da.spatial_gate, stats, spatial,
                                            grad_spatial, grads, ctx.matrix)
        # grad_out * spatial and the channel mean's and max's gradients
        grad_y = add_channel_stats_grad(grad_out, grad_stats, top_index,
                                        times=spatial)
        grad_gate = torch.mul(grad_y, m, out=product).sum(
            dim=(2, 3), keepdim=True)
        del m, product
        grad_avg, grad_peak = _channel_gate_backward(
            da.channel_gate, avg, peak, gate, grad_gate, grads)
        # grad_y * gate and the mean's and max's over the locations of m
        grad_m = location_stats_grad(grad_avg, grad_peak, peak_index,
                                     grad_y.shape, into=grad_y, times=gate)
        del grad_y
        # the multi-scale block
        grad_first, grad_q = grad_m.split([width, channels - width], dim=1)
        grad_z = torch.ops.aten.threshold_backward(grad_q, r, 0)
        del r
        grad_c = batch_norm_backward(bn, grad_z, c, mean, invstd, grads)
        del grad_z, c
        # (the convolution's backward wants its input dense)
        grad_rest = conv_backward(conv, grad_c, rest.contiguous(
            memory_format=memory_format_of(x)),
                                  ctx.needs_input_grad[2], grads)
        grad_x = None
        if ctx.needs_input_grad[2]:
            grad_x = _assemble(ms, x, grad_first, grad_rest, grad_q)
        return (None, None, grad_x) + tuple(grads.get(p) for p in ctx.params)


def multi_scale_attention(blocks: Sequence[nn.Module],
                          x: torch.Tensor) -> torch.Tensor:
    """``da(ms(x))`` for ``blocks = (ms, da)`` (see the module docstring;
    check :func:`fusable` first).

    Args:
        blocks: A ``MultiScaleBlock`` and a ``DualAttentionBlock``.
        x (Tensor): ``(B, C, H, W)``.

    Returns:
        Tensor: ``(B, C, H, W)``.
    """
    ms, da = blocks
    params = list(ms.parameters()) + list(da.parameters())
    return _MultiScaleAttention.apply(ms, da, x, *params)
