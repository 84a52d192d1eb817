# Copyright (c) ffl_mm contributors.
"""MFEF's chain as one autograd function: the modules' values, gradients
and BatchNorm statistics, with one input-sized map kept for backward."""
import copy

import pytest
import torch

from conftest import mixed_layout_ops, saved_bytes
from ffl_mm.models.necks import (DualAttentionNeck, FusionPreNecks,
                                 MultiScaleNeck)
from ffl_mm.models.kernels.multi_scale_attention import (
    fusable, multi_scale_attention)

MFEF = [dict(type='MultiScaleNeck', scales=4, residual=True),
        dict(type='DualAttentionNeck', reduction=4, kernel_size=3)]


def _blocks(residual=True, channels=16, seed=0):
    torch.manual_seed(seed)
    ms = MultiScaleNeck(channels, scales=4, residual=residual).blocks[0]
    da = DualAttentionNeck(channels, reduction=4, kernel_size=3).blocks[0]
    # BN affine parameters away from their (1, 0) start
    with torch.no_grad():
        ms.grouped.bn.weight.uniform_(0.5, 1.5)
        ms.grouped.bn.bias.uniform_(-0.5, 0.5)
    return ms.double().train(), da.double().train()


def _run(blocks, x, grad, fused):
    params = [p for b in blocks for p in b.parameters()]
    x = x.clone().requires_grad_()
    if fused:
        assert fusable(blocks, x)
        out = multi_scale_attention(blocks, x)
    else:
        out = blocks[1](blocks[0](x))
    grads = torch.autograd.grad(out, [x] + params, grad)
    buffers = [b.clone() for blk in blocks for b in blk.buffers()]
    return out, grads, buffers


@pytest.mark.parametrize('residual, channels_last, size', [
    (True, False, 5), (False, False, 5), (True, True, 5),
    (True, False, 17)])  # 17 x 17: the spatial gate's conv by its backward
def test_fused_chain_equals_the_modules(residual, channels_last, size):
    blocks = _blocks(residual)
    twin = copy.deepcopy(blocks)
    torch.manual_seed(1)
    x = torch.randn(3, 16, size, size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(3, 16, size, size, dtype=torch.float64)
    out, grads, buffers = _run(blocks, x, grad, fused=True)
    ref, ref_grads, ref_buffers = _run(twin, x, grad, fused=False)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    # running mean, variance and the batch count moved once, alike
    for a, b in zip(buffers, ref_buffers):
        torch.testing.assert_close(a, b)
    assert int(blocks[0].grouped.bn.num_batches_tracked) == 1


@pytest.mark.parametrize('grad_layout',
                         [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize('layout',
                         [torch.contiguous_format, torch.channels_last])
def test_backward_runs_in_the_input_layout(layout, grad_layout):
    """The gradient may arrive in the other layout (PyTorch's CPU average
    pooling gives default-layout gradients to channels-last maps); the
    backward brings it to the input's layout once, so that no op mixes
    two layouts (a slow path), and the values stay the modules'."""
    blocks = _blocks()
    twin = copy.deepcopy(blocks)
    torch.manual_seed(1)
    x = torch.randn(3, 16, 5, 5, dtype=torch.float64).contiguous(
        memory_format=layout)
    grad = torch.randn(3, 16, 5, 5, dtype=torch.float64).contiguous(
        memory_format=grad_layout)
    fused = []
    assert mixed_layout_ops(
        lambda: fused.extend(_run(blocks, x, grad, fused=True))) == []
    ref = _run(twin, x, grad, fused=False)
    torch.testing.assert_close(fused[0], ref[0])
    for a, b in zip(fused[1], ref[1]):
        torch.testing.assert_close(a, b)


def test_gradcheck():
    blocks = _blocks(channels=8)
    # momentum 0: the running statistics stay put across gradcheck's calls
    blocks[0].grouped.bn.momentum = 0.0
    params = [p for b in blocks for p in b.parameters()]
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64, requires_grad=True)

    def fn(x, *params):
        return multi_scale_attention(blocks, x)

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_keeps_the_input_and_the_convolution_output():
    """The modules keep 2.5 maps of the input's size besides the input;
    the fused function the input and the grouped convolution's output
    (3/4 of a map with 4 scales)."""
    torch.manual_seed(0)
    ms = MultiScaleNeck(64).blocks[0].train()
    da = DualAttentionNeck(64).blocks[0].train()
    x = torch.randn(128, 64, 8, 8, requires_grad=True)
    full = x.numel() * x.element_size()

    fused = saved_bytes(lambda: multi_scale_attention((ms, da), x))
    plain = saved_bytes(lambda: da(ms(x)))
    assert 1.75 * full <= fused < 1.95 * full  # and the gates, indices
    assert plain > 3 * full


def test_fallbacks():
    ms, da = _blocks()
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    assert fusable((ms, da), x)
    with torch.no_grad():
        assert not fusable((ms, da), x)
    assert not fusable((da, ms), x)
    assert not fusable((ms.eval(), da), x)
    ms.train()
    hierarchical = MultiScaleNeck(16, hierarchical=True).blocks[0].double()
    assert not fusable((hierarchical, da), x)
    spatial_first = DualAttentionNeck(
        16, gates=('spatial', 'channel')).blocks[0].double()
    assert not fusable((ms, spatial_first), x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not fusable((ms, da), x)


def test_fusion_pre_necks_take_the_fused_path(monkeypatch):
    """MFEF's chains go through the function in training; the result is
    the modules' either way."""
    from ffl_mm.models.necks import fusion_pre_necks as module
    calls = []
    real = module.multi_scale_attention

    def counting(blocks, x):
        calls.append(x.shape)
        return real(blocks, x)

    monkeypatch.setattr(module, 'multi_scale_attention', counting)
    torch.manual_seed(0)
    necks = FusionPreNecks(MFEF, 16, 2).double().train()
    twin = copy.deepcopy(necks)
    maps = [torch.randn(2, 16, 4, 4, dtype=torch.float64) for _ in range(2)]
    out = necks(maps)
    assert calls == [(2, 16, 4, 4)] * 2
    ref = [chain(x) for chain, x in zip(twin, maps)]
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b)


def test_tied_maxima_send_the_gradient_where_the_modules_do():
    """Integer inputs without the residual: the first group of channels
    passes as it is, with tied maxima everywhere."""
    blocks = _blocks(residual=False)
    twin = copy.deepcopy(blocks)
    torch.manual_seed(2)
    x = torch.randint(0, 3, (3, 16, 5, 5)).double()
    grad = torch.randn(3, 16, 5, 5, dtype=torch.float64)
    out, grads, _ = _run(blocks, x, grad, fused=True)
    ref, ref_grads, _ = _run(twin, x, grad, fused=False)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_hooks_and_reparametrised_weights_take_the_modules():
    """The fused chain and the attention's fast path read the modules'
    parameters without calling them: with a hook, or a weight computed
    from other parameters (spectral norm, by a pre-hook), the modules
    run, so that hooks fire and gradients reach the real parameters."""
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    ms, da = _blocks()
    seen = []
    handle = da.spatial_gate.register_forward_hook(
        lambda *args: seen.append(1))
    assert not fusable((ms, da), x)
    da(ms(x))
    assert seen == [1]
    handle.remove()
    assert fusable((ms, da), x)
    # a spectral-normed channel MLP: the gate computes with the weight its
    # pre-hook makes from weight_orig, and weight_orig gets the gradient
    torch.nn.utils.spectral_norm(da.channel_gate.mlp[0])
    assert not fusable((ms, da), x)
    twin = copy.deepcopy(da)
    xg = x.clone().requires_grad_()
    out = da(xg)
    out.sum().backward()
    assert da.channel_gate.mlp[0].weight_orig.grad is not None
    mlp = twin.channel_gate.mlp
    with torch.no_grad():
        avg, peak = x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3),
                                                             keepdim=True)
        # one call on both statistics: spectral norm's power iteration
        # moves on each call in training
        a, p = mlp(torch.cat([avg, peak])).chunk(2)
        y = x * torch.sigmoid(a + p)
        stats = torch.cat([y.mean(1, keepdim=True),
                           y.amax(1, keepdim=True)], dim=1)
        ref = y * torch.sigmoid(twin.spatial_gate.conv(stats))
    torch.testing.assert_close(out.detach(), ref)


def test_compiled_chains_trace_the_fused_function(monkeypatch):
    """Under ``torch.compile`` MFEF's chains still go through the function
    (what it saves is where the compiler starts), traced whole, backward
    included (``fullgraph``: no graph break), with the modules' values,
    gradients and BatchNorm statistics. ``aot_eager``: the capture and
    the compiled backward, without code generation."""
    size = 5
    from ffl_mm.models.necks import fusion_pre_necks as module
    calls = []
    real = module.multi_scale_attention

    def counting(blocks, x):
        calls.append(tuple(x.shape))
        return real(blocks, x)

    monkeypatch.setattr(module, 'multi_scale_attention', counting)
    torch.manual_seed(0)
    necks = FusionPreNecks(MFEF, 16, 2).double().train()
    twin = copy.deepcopy(necks)
    maps = [torch.randn(3, 16, size, size, dtype=torch.float64)
            for _ in range(2)]
    grads = [torch.randn_like(x) for x in maps]

    def run(fn, params):
        inputs = [x.clone().requires_grad_() for x in maps]
        out = fn(inputs)
        got = torch.autograd.grad(out, inputs + params, grads)
        return out, got

    torch._dynamo.reset()
    compiled = torch.compile(necks, backend='aot_eager', fullgraph=True)
    out, got = run(compiled, list(necks.parameters()))
    assert calls == [(3, 16, size, size)] * 2
    ref, expected = run(lambda xs: [c(x) for c, x in zip(twin, xs)],
                        list(twin.parameters()))
    for a, b in zip(out + list(got), ref + list(expected)):
        torch.testing.assert_close(a, b)
    for a, b in zip(necks.buffers(), twin.buffers()):
        torch.testing.assert_close(a, b)
    assert int(necks[0][0].blocks[0].grouped.bn.num_batches_tracked) == 1
