# Copyright (c) ffl_mm contributors.
"""The dual-attention autograd functions: values and gradients of the
plain formulas, and only the input map kept for backward."""
import pytest
import torch
import torch.nn.functional as F

from ffl_mm_analysis.benchmark import SavedTensorMeter
from ffl_mm.models.necks import DualAttentionNeck
from ffl_mm.models.kernels.dual_attention_ops import (
    SMALL_MAP, channel_stats, gated_product, gated_spatial_stats,
    small_map_conv2d)


def _x(*shape):
    torch.manual_seed(0)
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_channel_stats_gradcheck_and_values():
    x = _x(2, 3, 4, 5)
    avg, peak = channel_stats(x)
    torch.testing.assert_close(avg, x.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(peak, x.amax(dim=(2, 3), keepdim=True))
    assert torch.autograd.gradcheck(channel_stats, (x, ))


def test_gated_functions_gradcheck_and_values():
    x = _x(2, 3, 4, 5)
    gate = torch.rand(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    spatial = torch.rand(2, 1, 4, 5, dtype=torch.float64,
                         requires_grad=True)
    y, stats = gated_spatial_stats(x, gate)
    torch.testing.assert_close(y, x * gate)
    torch.testing.assert_close(
        stats, torch.cat([(x * gate).mean(1, keepdim=True),
                          (x * gate).amax(1, keepdim=True)], dim=1))
    assert torch.autograd.gradcheck(gated_spatial_stats, (x, gate))

    def chained(x, gate, spatial):
        y, stats = gated_spatial_stats(x, gate)
        return gated_product(y, x, gate, spatial) * stats[:, 1:]

    def plain(x, gate, spatial):
        y = x * gate
        return y * spatial * y.amax(1, keepdim=True)

    torch.testing.assert_close(chained(x, gate, spatial),
                               plain(x, gate, spatial))
    assert torch.autograd.gradcheck(chained, (x, gate, spatial))


@pytest.mark.parametrize('size, k', [((8, 8), 7), ((5, 5), 3), ((7, 7), 7),
                                     ((3, 6), 5), ((17, 17), 7)])
def test_small_map_conv_is_the_convolution(size, k):
    x = _x(3, 2, *size)
    weight = torch.randn(1, 2, k, k, dtype=torch.float64,
                         requires_grad=True)
    bias = torch.randn(1, dtype=torch.float64, requires_grad=True)
    out = small_map_conv2d(x, weight, bias)
    ref = F.conv2d(x, weight, bias, padding=k // 2)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (x, weight, bias), grad),
                    torch.autograd.grad(ref, (x, weight, bias), grad)):
        torch.testing.assert_close(a, b)
    # 17 x 17 is above SMALL_MAP: the plain convolution
    assert (size[0] * size[1] > SMALL_MAP) == (size == (17, 17))


def test_block_keeps_only_its_input_map():
    """Of the full-size maps, backward keeps only the block's input (the
    autograd of the plain formulas also kept the gated map and a copy
    per max)."""
    block = DualAttentionNeck(64, reduction=16).blocks[0]
    # MFEF's CIFAR map at a training batch size
    x = torch.randn(128, 64, 8, 8, requires_grad=True)
    full = x.numel() * x.element_size()
    meter = SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        out = block(x)
    big = [n for n in meter.storages.values() if n >= full]
    assert big == [full]
    # the gates, statistics and argmax indices: small
    assert meter.nbytes < 1.25 * full
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_channels_last_input():
    block = DualAttentionNeck(16, reduction=4).blocks[0].double()
    x = _x(2, 16, 5, 5)
    xc = x.detach().contiguous(
        memory_format=torch.channels_last).requires_grad_()
    out, out_cl = block(x), block(xc)
    torch.testing.assert_close(out, out_cl)
    grad = torch.randn_like(out)
    torch.testing.assert_close(
        torch.autograd.grad(out, x, grad)[0],
        torch.autograd.grad(out_cl, xc, grad)[0])
