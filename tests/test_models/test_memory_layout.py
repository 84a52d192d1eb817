# Copyright (c) ffl_mm contributors.
"""Layouts of maps and the concatenation that returns each map's
gradient in its own layout."""
import pytest
import torch

from ffl_mm.models.kernels.memory_layout import (concat_maps, in_layout_of,
                                                 memory_format_of)

CL = torch.channels_last
DEFAULT = torch.contiguous_format


def test_memory_format_of():
    x = torch.randn(2, 6, 4, 4)
    assert memory_format_of(x) == DEFAULT
    assert memory_format_of(x[:, 2:]) == DEFAULT
    y = x.contiguous(memory_format=CL)
    assert memory_format_of(y) == CL
    # a channel slice of a channels-last map keeps its order
    assert memory_format_of(y[:, 2:]) == CL
    # no layout to speak of: one channel, one location, not a map
    assert memory_format_of(torch.randn(2, 1, 4, 4)) == DEFAULT
    assert memory_format_of(
        torch.randn(2, 6, 1, 1).contiguous(memory_format=CL)) == DEFAULT
    assert memory_format_of(torch.randn(2, 6)) == DEFAULT
    assert in_layout_of(x, y).is_contiguous(memory_format=CL)
    assert in_layout_of(y, y) is y
    # a slice in the same order stays a view (passes walk it in order)
    part = y[:, 2:]
    assert in_layout_of(part, y) is part
    assert in_layout_of(part, x).is_contiguous()


@pytest.mark.parametrize('out_format', [DEFAULT, CL])
def test_concat_maps_values_and_gradients(out_format):
    torch.manual_seed(0)
    maps = [torch.randn(2, 3, 4, 5), torch.randn(2, 5, 4, 5).contiguous(
        memory_format=CL)]
    maps = [x.requires_grad_() for x in maps]
    out = concat_maps(maps, out_format)
    assert out.is_contiguous(memory_format=out_format)
    ref_maps = [x.detach().clone().requires_grad_() for x in maps]
    ref = torch.cat(ref_maps, dim=1)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grad = torch.randn_like(ref)
    out.backward(grad.contiguous(memory_format=out_format))
    ref.backward(grad)
    for x, r in zip(maps, ref_maps):
        torch.testing.assert_close(x.grad, r.grad, rtol=0, atol=0)
        # each map's gradient in that map's layout (dense or a slice)
        assert memory_format_of(x.grad) == memory_format_of(x)


def test_concat_maps_promotes_dtypes_and_runs_without_grad():
    a = torch.randn(2, 3, 4, 4, dtype=torch.float16, requires_grad=True)
    b = torch.randn(2, 2, 4, 4, requires_grad=True)
    out = concat_maps([a, b], CL)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert a.grad.dtype == torch.float16 and b.grad.dtype == torch.float32
    with torch.no_grad():
        out = concat_maps([a, b], CL)
    assert out.grad_fn is None and out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, torch.cat([a.float(), b], dim=1))
