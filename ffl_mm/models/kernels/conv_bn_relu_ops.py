# Copyright (c) ffl_mm contributors.
"""The pieces of a training-mode conv -> BatchNorm -> ReLU ``ConvModule``
for autograd functions that recompute part of it in backward.

The functions that use them (:mod:`.multi_scale_attention`,
:mod:`.fusion_convs`) keep the convolution's input and the batch
statistics, and in backward redo the normalisation with the forward's
statistics (``c * scale + shift``): running statistics move once, in
forward, as in ``nn.BatchNorm2d``.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu_fusable(conv_module: nn.Module) -> bool:
    """Whether ``conv_module`` is an MMCV ``ConvModule`` that these
    helpers compute: a plain ``nn.Conv2d`` without bias (zero padding),
    then ``nn.BatchNorm2d`` in training mode with running statistics (not
    synchronised BN), then ReLU."""
    conv = getattr(conv_module, 'conv', None)
    norm = getattr(conv_module, 'norm', None)
    return getattr(conv_module, 'order', None) == ('conv', 'norm', 'act') \
        and not getattr(conv_module, 'with_explicit_padding', True) \
        and type(conv) is nn.Conv2d and conv.bias is None \
        and conv.padding_mode == 'zeros' \
        and type(norm) is nn.BatchNorm2d and norm.track_running_stats \
        and norm.training \
        and isinstance(getattr(conv_module, 'activate', None), nn.ReLU)


def autocast_on(x: torch.Tensor) -> bool:
    """Whether autocast is on for ``x``'s device (the fused functions
    compute in the input's precision, as without autocast)."""
    if x.device.type in ('cpu', 'cuda'):
        return torch.is_autocast_enabled(x.device.type)
    return True


def conv_forward(conv: nn.Conv2d, x: torch.Tensor,
                 bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv(x)`` for a convolution without bias (``bias``: added, see
    :func:`recompute_conv`)."""
    return F.conv2d(x, conv.weight, bias, conv.stride, conv.padding,
                    conv.dilation, conv.groups)


def recompute_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """:func:`conv_forward` again, in a backward that recomputes it.

    Under ``torch.compile`` the forward and the backward form one graph,
    whose common-subexpression pass would merge an identical convolution
    with the forward's and keep its output for backward (what the
    recomputation is there to avoid): there it adds a zero bias, which
    leaves the values as they are and the two calls distinct.
    """
    bias = None
    if torch.compiler.is_compiling():
        bias = x.new_zeros(conv.out_channels)
    return conv_forward(conv, x, bias)


def conv_backward(conv: nn.Conv2d, grad: torch.Tensor, x: torch.Tensor,
                  input_grad: bool,
                  grads: Dict[torch.Tensor, torch.Tensor]
                  ) -> Optional[torch.Tensor]:
    """The gradient of ``conv(x)`` for its input (``None`` unless
    ``input_grad``); the weight's, and the bias's if it has one, go into
    ``grads``."""
    with_bias = conv.bias is not None
    grad_x, grads[conv.weight], grad_bias = \
        torch.ops.aten.convolution_backward(
            grad, x, conv.weight, [conv.out_channels] if with_bias else None,
            conv.stride, conv.padding, conv.dilation, False,
            [0] * len(conv.padding), conv.groups,
            [input_grad, True, with_bias])
    if with_bias:
        grads[conv.bias] = grad_bias
    return grad_x


def batch_norm_train(bn: nn.BatchNorm2d, c: torch.Tensor
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``bn(c)`` in training mode (running statistics and the batch count
    move as in ``nn.BatchNorm2d.forward``), with the batch mean and
    inverse standard deviation ``(C, )`` that backward needs."""
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:  # a cumulative average
        factor = 1.0 / float(bn.num_batches_tracked)
    else:
        factor = bn.momentum
    return torch.native_batch_norm(c, bn.weight, bn.bias, bn.running_mean,
                                   bn.running_var, True, factor, bn.eps)


def batch_norm_affine(bn: nn.BatchNorm2d, mean: torch.Tensor,
                      invstd: torch.Tensor) -> Tuple[torch.Tensor,
                                                     torch.Tensor]:
    """``scale`` and ``shift`` ``(C, 1, 1)`` such that the forward's
    normalisation is ``c * scale + shift``."""
    scale = invstd if bn.weight is None else invstd * bn.weight
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale[:, None, None], shift[:, None, None]


def batch_norm_backward(bn: nn.BatchNorm2d, grad: torch.Tensor,
                        c: torch.Tensor, mean: torch.Tensor,
                        invstd: torch.Tensor,
                        grads: Dict[torch.Tensor, torch.Tensor]
                        ) -> torch.Tensor:
    """The gradient of the training-mode normalisation of ``c`` for ``c``;
    the affine parameters' go into ``grads``."""
    grad_c, grad_weight, grad_bias = \
        torch.ops.aten.native_batch_norm_backward(
            grad, c, bn.weight, None, None, mean, invstd, True, bn.eps,
            [True, bn.weight is not None, bn.bias is not None])
    if bn.weight is not None:
        grads[bn.weight] = grad_weight
    if bn.bias is not None:
        grads[bn.bias] = grad_bias
    return grad_c
