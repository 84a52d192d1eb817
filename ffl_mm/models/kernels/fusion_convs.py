# Copyright (c) ffl_mm contributors.
"""FFL's fusion convolutions as one autograd function that keeps its
input and the 1x1 convolution's output only.

``FFLFusionNeck`` runs, on the concatenated branch maps ``x``
``(B, N·C, H, W)``::

    d = depthwise 3x3 conv(x) -> BN -> ReLU = r   (B, N·C, H, W)
    p = 1x1 conv(r)           -> BN -> ReLU = out (B, C_out, H, W)

Through the modules autograd keeps ``x``, ``d``, ``r``, ``p`` and
``out`` for backward. This function keeps ``x``, ``p`` and the batch
statistics, and in backward recomputes ``d`` (a depthwise convolution,
cheap) and ``r`` (one pass) and takes the second ReLU's mask from ``p``:
two maps of ``x``'s size and one of ``out``'s fewer, for one depthwise
convolution more per step. Values and gradients are those of the modules
(up to the order of float additions); the tests compare them.

Used in training with gradients, for conv -> BN -> ReLU ``ConvModule``
s (:func:`.conv_bn_relu_ops.conv_bn_relu_fusable`) without hooks or
re-parametrised weights (:func:`.plain_modules.plain_modules`), without
autocast; anything else runs the modules. Under ``torch.compile`` the
function is traced whole, backward included, and the compiler fuses its
passes from this saved set rather than the modules' (it still chooses
what to keep: figures in ``docs/benchmarks.md``).
"""
import torch
import torch.nn as nn
from torch.autograd import Function

from .conv_bn_relu_ops import (autocast_on, batch_norm_affine,
                               batch_norm_backward, batch_norm_train,
                               conv_backward, conv_bn_relu_fusable,
                               conv_forward, recompute_conv)
from .memory_layout import in_layout_of
from .plain_modules import plain_modules


def fusion_convs_fusable(depthwise: nn.Module, pointwise: nn.Module,
                         x: torch.Tensor) -> bool:
    """Whether :func:`fusion_convs` computes ``pointwise(depthwise(x))``."""
    return torch.is_grad_enabled() \
        and x.dim() == 4 and not autocast_on(x) \
        and conv_bn_relu_fusable(depthwise) \
        and conv_bn_relu_fusable(pointwise) \
        and plain_modules(depthwise, pointwise)


class _FusionConvs(Function):

    @staticmethod
    def forward(ctx, depthwise, pointwise, x, *params):
        d = conv_forward(depthwise.conv, x)
        r, mean1, invstd1 = batch_norm_train(depthwise.norm, d)
        del d
        p = conv_forward(pointwise.conv, r.clamp_(min=0))
        del r
        out, mean2, invstd2 = batch_norm_train(pointwise.norm, p)
        ctx.modules, ctx.params = (depthwise, pointwise), params
        ctx.save_for_backward(x, p, mean1, invstd1, mean2, invstd2)
        return out.clamp_(min=0)

    @staticmethod
    def backward(ctx, grad_out):
        depthwise, pointwise = ctx.modules
        x, p, mean1, invstd1, mean2, invstd2 = ctx.saved_tensors
        # (the pooling's backward gives the default layout on the CPU)
        grad_out = in_layout_of(grad_out, p)
        grads = {}
        # the second ReLU's mask from p (its input before normalising)
        scale, shift = batch_norm_affine(pointwise.norm, mean2, invstd2)
        grad_p = torch.ops.aten.threshold_backward(
            grad_out, torch.addcmul(shift, p, scale), 0)
        grad_p = batch_norm_backward(pointwise.norm, grad_p, p, mean2,
                                     invstd2, grads)
        # the depthwise half again, with the forward's statistics
        d = recompute_conv(depthwise.conv, x)
        scale, shift = batch_norm_affine(depthwise.norm, mean1, invstd1)
        r = torch.addcmul(shift, d, scale).clamp_(min=0)
        grad_r = conv_backward(pointwise.conv, grad_p, r, True, grads)
        grad_r = torch.ops.aten.threshold_backward(grad_r, r, 0)
        del r
        grad_d = batch_norm_backward(depthwise.norm, grad_r, d, mean1,
                                     invstd1, grads)
        del d, grad_r
        grad_x = conv_backward(depthwise.conv, grad_d, x,
                               ctx.needs_input_grad[2], grads)
        return (None, None, grad_x) + tuple(grads.get(q) for q in ctx.params)


def fusion_convs(depthwise: nn.Module, pointwise: nn.Module,
                 x: torch.Tensor) -> torch.Tensor:
    """``pointwise(depthwise(x))`` for two conv -> BN -> ReLU
    ``ConvModule`` s (check :func:`fusion_convs_fusable` first).

    Args:
        depthwise (ConvModule): The depthwise 3x3 block.
        pointwise (ConvModule): The 1x1 block.
        x (Tensor): ``(B, C_in, H, W)``.

    Returns:
        Tensor: ``(B, C_out, H', W')``.
    """
    params = list(depthwise.parameters()) + list(pointwise.parameters())
    return _FusionConvs.apply(depthwise, pointwise, x, *params)
