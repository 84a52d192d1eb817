# Copyright (c) ffl_mm contributors.
import pytest
import torch
from ffl_mm.registry import MODELS

import ffl_mm  # noqa: F401
from conftest import count_params, mixed_layout_ops
from ffl_mm.models.necks import FFLFusionNeck


def test_equal_branches_shape_and_parameters():
    neck = FFLFusionNeck(in_channels=64, num_branches=2, out_channels=64)
    maps = [torch.randn(3, 64, 8, 8), torch.randn(3, 64, 8, 8)]
    out = neck(maps)
    assert isinstance(out, tuple) and out[0].shape == (3, 64)
    # depthwise 128*9 + BN 2*128 + pointwise 128*64 + BN 2*64, no biases
    assert count_params(neck) == 128 * 9 + 256 + 128 * 64 + 128 == 9728
    assert neck.depthwise.conv.groups == 128
    assert neck.depthwise.conv.bias is None
    assert neck.pointwise.conv.bias is None
    assert neck.fuse(maps).shape == (3, 64, 8, 8)
    # pooled output is the mean of the fused map
    torch.testing.assert_close(out[0], neck.fuse(maps).mean(dim=(2, 3)))


def test_three_branches_and_default_out_channels():
    neck = MODELS.build(
        dict(type='FFLFusionNeck', in_channels=[32, 32, 32]))
    assert neck.out_channels == 32
    out = neck([torch.randn(2, 32, 4, 4) for _ in range(3)])
    assert out[0].shape == (2, 32)
    assert neck.depthwise.conv.in_channels == 96


def test_unequal_channels_and_sizes_are_aligned():
    neck = FFLFusionNeck(in_channels=[64, 128], out_channels=96)
    assert isinstance(neck.projections[1], torch.nn.Identity)
    proj = neck.projections[0]
    assert proj.conv.kernel_size == (1, 1) and proj.conv.out_channels == 128
    maps = [torch.randn(2, 64, 8, 8), torch.randn(2, 128, 4, 4)]
    assert neck.fuse(maps).shape == (2, 96, 4, 4)
    assert neck(maps)[0].shape == (2, 96)
    # the larger map is average-pooled to 4x4 before fusion
    neck.eval()
    captured = {}
    handle = neck.depthwise.register_forward_hook(
        lambda m, i, o: captured.setdefault('x', i[0]))
    neck(maps)
    handle.remove()
    pooled = torch.nn.functional.avg_pool2d(maps[0], 2)
    torch.testing.assert_close(captured['x'][:, :128], proj(pooled))
    torch.testing.assert_close(captured['x'][:, 128:], maps[1])


def test_gradient_reaches_every_branch_map():
    neck = FFLFusionNeck(in_channels=16, num_branches=2, out_channels=8)
    maps = [torch.randn(2, 16, 4, 4, requires_grad=True) for _ in range(2)]
    neck(maps)[0].sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


@pytest.mark.parametrize('kwargs, maps, match', [
    (dict(in_channels=64), None, 'give num_branches'),
    (dict(in_channels=[64]), None, 'at least 2 branches'),
    (dict(in_channels=[64, 64], num_branches=3), None, 'num_branches=3'),
    (dict(in_channels=64, num_branches=2), [(2, 32, 8, 8), (2, 64, 8, 8)],
     r'branch 0 gives a map of shape \(2, 32, 8, 8\), expected \(B, 64'),
    (dict(in_channels=64, num_branches=2), [(2, 64, 8, 8)],
     'built for 2 branches, got 1'),
])
def test_errors(kwargs, maps, match):
    with pytest.raises(ValueError, match=match):
        neck = FFLFusionNeck(**kwargs)
        neck([torch.randn(*shape) for shape in maps])


@pytest.mark.parametrize('layout',
                         [torch.contiguous_format, torch.channels_last])
def test_gradients_return_in_the_branch_maps_layout(layout):
    """The module may run its convolutions in another memory layout, but
    the gradients it sends back keep the layout of the branch maps: a
    branch's backward fed gradients of another layout mixes layouts in
    every element-wise pass (measured several times slower on the CPU)."""
    neck = FFLFusionNeck(in_channels=16, num_branches=2, out_channels=8)
    maps = [
        torch.randn(4, 16, 6, 6).contiguous(memory_format=layout)
        for _ in range(2)
    ]
    seen = []
    inputs = []
    for x in maps:
        x = x.requires_grad_() * 1  # a non-leaf: its hook sees autograd's
        x.register_hook(seen.append)
        inputs.append(x)
    neck(inputs)[0].sum().backward()
    order = [0, 1, 2, 3] if layout == torch.contiguous_format else \
        [0, 2, 3, 1]  # dimensions from the largest stride to the smallest
    assert len(seen) == 2
    for grad in seen:
        assert sorted(range(4), key=lambda d: -grad.stride(d)) == order, \
            grad.stride()


@pytest.mark.parametrize('layout',
                         [torch.contiguous_format, torch.channels_last])
def test_no_op_mixes_layouts(layout):
    """Forward and backward run every pass in the maps' layout, but for
    one: in channels-last, the pooling's gradient (a mean's: PyTorch
    writes it in the default layout) meets the last ReLU's output in
    its backward, one pass over the fused output map."""
    neck = FFLFusionNeck(in_channels=16, num_branches=2, out_channels=8)
    maps = [
        torch.randn(4, 16, 6, 6).contiguous(
            memory_format=layout).requires_grad_() for _ in range(2)
    ]
    mixed = mixed_layout_ops(lambda: neck(maps)[0].sum().backward())
    if layout == torch.contiguous_format:
        assert mixed == []
    else:
        assert mixed == [('aten.threshold_backward', (4, 8, 6, 6),
                          ('NCHW', 'NHWC'))]
    for x in maps:
        assert x.grad.is_contiguous(memory_format=layout)
