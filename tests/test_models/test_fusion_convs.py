# Copyright (c) ffl_mm contributors.
"""FFL's fusion convolutions as one autograd function: the modules'
values, gradients and BatchNorm statistics, with two maps fewer kept for
backward."""
import copy

import pytest
import torch
from mmcv.cnn import ConvModule

from conftest import saved_bytes
from ffl_mm.models.necks import FFLFusionNeck
from ffl_mm.models.kernels.fusion_convs import (fusion_convs,
                                                fusion_convs_fusable)


def _neck(seed=0, **kwargs):
    torch.manual_seed(seed)
    neck = FFLFusionNeck(in_channels=8, num_branches=2, out_channels=6,
                         **kwargs)
    # BN affine parameters away from their (1, 0) start
    with torch.no_grad():
        for module in (neck.depthwise, neck.pointwise):
            if module.norm.weight is not None:
                module.norm.weight.uniform_(0.5, 1.5)
                module.norm.bias.uniform_(-0.5, 0.5)
    return neck.double().train()


def _run(neck, x, grad, fused):
    params = list(neck.depthwise.parameters()) + \
        list(neck.pointwise.parameters())
    x = x.clone().requires_grad_()
    if fused:
        assert fusion_convs_fusable(neck.depthwise, neck.pointwise, x)
        out = fusion_convs(neck.depthwise, neck.pointwise, x)
    else:
        out = neck.pointwise(neck.depthwise(x))
    grads = torch.autograd.grad(out, [x] + params, grad)
    buffers = [b.clone() for m in (neck.depthwise, neck.pointwise)
               for b in m.buffers()]
    return out, grads, buffers


@pytest.mark.parametrize('channels_last, norm_cfg', [
    (False, dict(type='BN')), (True, dict(type='BN')),
    (False, dict(type='BN', momentum=None)),
    (False, dict(type='BN', affine=False))])
def test_fused_convs_equal_the_modules(channels_last, norm_cfg):
    neck = _neck(norm_cfg=norm_cfg)
    twin = copy.deepcopy(neck)
    torch.manual_seed(1)
    x = torch.randn(3, 16, 5, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(3, 6, 5, 5, dtype=torch.float64)
    for step in range(2):  # running statistics from a moved start too
        out, grads, buffers = _run(neck, x, grad, fused=True)
        ref, ref_grads, ref_buffers = _run(twin, x, grad, fused=False)
        torch.testing.assert_close(out, ref)
        assert len(grads) == len(ref_grads)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b)
        # running mean, variance and the batch count moved once, alike
        for a, b in zip(buffers, ref_buffers):
            torch.testing.assert_close(a, b)
    assert int(neck.depthwise.norm.num_batches_tracked) == 2


def test_gradcheck():
    neck = _neck()
    # momentum 0: the running statistics stay put across gradcheck's calls
    neck.depthwise.norm.momentum = neck.pointwise.norm.momentum = 0.0
    params = list(neck.depthwise.parameters()) + \
        list(neck.pointwise.parameters())
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64, requires_grad=True)

    def fn(x, *params):
        return fusion_convs(neck.depthwise, neck.pointwise, x)

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_keeps_two_maps_fewer():
    """The modules keep the input, the depthwise output, the first ReLU's
    output, the 1x1 output and the second ReLU's output; the function the
    input and the 1x1 output."""
    neck = FFLFusionNeck(in_channels=64, num_branches=2).train()
    x = torch.randn(32, 128, 8, 8, requires_grad=True)
    full = x.numel() * x.element_size()  # 1x1 output: half of it

    dw, pw = neck.depthwise, neck.pointwise
    fused = saved_bytes(lambda: fusion_convs(dw, pw, x))
    plain = saved_bytes(lambda: pw(dw(x)))
    assert 1.5 * full <= fused < 1.6 * full
    assert plain >= 3.5 * full


def test_fallbacks():
    neck = _neck()
    dw, pw = neck.depthwise, neck.pointwise
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    assert fusion_convs_fusable(dw, pw, x)
    with torch.no_grad():
        assert not fusion_convs_fusable(dw, pw, x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not fusion_convs_fusable(dw, pw, x)
    assert not fusion_convs_fusable(dw.eval(), pw, x)
    dw.train()
    for cfg in (dict(act_cfg=None), dict(norm_cfg=None),
                dict(norm_cfg=dict(type='GN', num_groups=2)),
                dict(act_cfg=dict(type='LeakyReLU')),
                dict(padding_mode='reflect'), dict(bias=True),
                dict(order=('act', 'conv', 'norm'))):
        other = ConvModule(16, 6, 1, **cfg)
        assert not fusion_convs_fusable(dw, other, x), cfg


def test_fusion_neck_takes_the_fused_path(monkeypatch):
    """The neck goes through the function in training; its result and
    gradients are the modules' either way."""
    from ffl_mm.models.necks import ffl_fusion_neck as module
    calls = []
    real = module.fusion_convs

    def counting(depthwise, pointwise, x):
        calls.append(x.shape)
        return real(depthwise, pointwise, x)

    monkeypatch.setattr(module, 'fusion_convs', counting)
    neck = _neck()
    twin = copy.deepcopy(neck)
    maps = [torch.randn(2, 8, 4, 4, dtype=torch.float64, requires_grad=True)
            for _ in range(2)]
    out = neck(maps)[0]
    assert calls == [(2, 16, 4, 4)]
    monkeypatch.setattr(module, 'fusion_convs_fusable', lambda *a: False)
    ref = twin(maps)[0]
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.sum(), maps)
    ref_grads = torch.autograd.grad(ref.sum(), maps)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    # evaluation runs the modules (no backward to save for)
    neck.eval()
    with torch.no_grad():
        neck(maps)
    assert len(calls) == 1


def test_hooks_and_reparametrised_weights_take_the_modules():
    """The function computes with the modules' own parameters and calls no
    module: where a module has hooks, or a weight computed from other
    parameters (spectral norm), the modules run, so that the hooks fire
    and the gradients reach the real parameters."""
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    neck = _neck()
    seen = []
    handle = neck.depthwise.conv.register_forward_hook(
        lambda *args: seen.append(1))
    assert not fusion_convs_fusable(neck.depthwise, neck.pointwise, x)
    neck([x[:, :8], x[:, 8:]])
    assert seen == [1]
    handle.remove()
    assert fusion_convs_fusable(neck.depthwise, neck.pointwise, x)
    spectral = ConvModule(16, 6, 1, norm_cfg=dict(type='BN'),
                          with_spectral_norm=True).double()
    assert not fusion_convs_fusable(neck.depthwise, spectral, x)
    neck.pointwise = spectral
    out = neck([x[:, :8], x[:, 8:]])[0]
    out.sum().backward()
    assert spectral.conv.weight_orig.grad is not None


def test_compiled_neck_traces_the_fused_function(monkeypatch):
    """Under ``torch.compile`` (``aot_eager``: capture and compiled
    backward) the fusion neck still goes through the function, traced
    whole (``fullgraph``), with the modules' values, gradients and
    running statistics over two steps."""
    from ffl_mm.models.necks import ffl_fusion_neck as module
    calls = []
    real = module.fusion_convs

    def counting(depthwise, pointwise, x):
        calls.append(tuple(x.shape))
        return real(depthwise, pointwise, x)

    monkeypatch.setattr(module, 'fusion_convs', counting)
    neck = _neck()
    twin = copy.deepcopy(neck)
    torch.manual_seed(1)
    maps = [torch.randn(3, 8, 5, 5, dtype=torch.float64) for _ in range(2)]
    grad = torch.randn(3, 6, dtype=torch.float64)

    def run(fn, net):
        inputs = [x.clone().requires_grad_() for x in maps]
        out, = fn(inputs)
        return out, torch.autograd.grad(
            out, inputs + list(net.parameters()), grad)

    torch._dynamo.reset()
    compiled = torch.compile(neck, backend='aot_eager', fullgraph=True)
    for step in range(2):
        out, got = run(compiled, neck)
        with monkeypatch.context() as plain:
            # the modules, for the expected values
            plain.setattr(module, 'fusion_convs_fusable',
                          lambda *args: False)
            ref, expected = run(twin, twin)
        torch.testing.assert_close(out, ref)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)
        for a, b in zip(neck.buffers(), twin.buffers()):
            torch.testing.assert_close(a, b)
    assert calls == [(3, 16, 5, 5)] * 2  # (dynamo replays the append)
    assert int(neck.depthwise.norm.num_batches_tracked) == 2


def test_compiled_function_keeps_what_eager_keeps():
    """The compiler's partitioner (min-cut, as inductor's; no code
    generation here) keeps for backward the function's own saved set: it
    recomputes the depthwise half, as the function does, instead of
    merging that recomputation with the forward's and keeping its
    output."""
    from functorch.compile import (make_boxed_func,
                                   min_cut_rematerialization_partition)
    from torch._dynamo.backends.common import aot_autograd

    def nop(graph, inputs):
        return make_boxed_func(graph)

    backend = aot_autograd(
        fw_compiler=nop, bw_compiler=nop,
        partition_fn=min_cut_rematerialization_partition)
    neck = _neck()
    dw, pw = neck.depthwise, neck.pointwise
    x = torch.randn(3, 16, 5, 5, dtype=torch.float64, requires_grad=True)
    eager = saved_bytes(lambda: fusion_convs(dw, pw, x))
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: fusion_convs(dw, pw, x),
                             backend=backend, fullgraph=True)
    compiled(x)  # compile outside the measurement
    assert saved_bytes(lambda: compiled(x)) == eager
