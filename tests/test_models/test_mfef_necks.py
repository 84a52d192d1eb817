# Copyright (c) ffl_mm contributors.
import pytest
import torch
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from ffl_mm.models.necks import DualAttentionNeck, MultiScaleNeck
from conftest import count_params, ffl_cfg, heterogeneous_cfg


# ----------------------------------------------------------------- multi-scale
@pytest.mark.parametrize('scales', [2, 4, 8])
@pytest.mark.parametrize('hierarchical', [False, True])
@pytest.mark.parametrize('residual', [False, True])
def test_multi_scale_shapes_and_parameters(scales, hierarchical, residual):
    neck = MultiScaleNeck(
        64, scales=scales, hierarchical=hierarchical, residual=residual)
    x = torch.randn(2, 64, 8, 8)
    assert neck(x).shape == (2, 64, 8, 8)
    w = 64 // scales
    # (s - 1) convs of w -> w, 3x3 without bias, each with a BN
    assert count_params(neck) == (scales - 1) * (9 * w * w + 2 * w)


def test_multi_scale_structure():
    neck = MultiScaleNeck(8, scales=4, residual=False).eval()
    block = neck.blocks[0]
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        out = neck(x)
        groups = torch.split(x, 2, dim=1)
        # group 1 passes through; groups 2..4 go through their own 3x3
        # conv + BN + ReLU (one grouped conv): rebuild group 4's by hand
        torch.testing.assert_close(out[:, :2], groups[0])
        conv, bn = block.grouped.conv, block.grouped.bn
        y = torch.nn.functional.conv2d(groups[3], conv.weight[4:6],
                                       padding=1)
        y = (y - bn.running_mean[4:6, None, None]) / torch.sqrt(
            bn.running_var[4:6, None, None] + bn.eps)
        y = torch.relu(y * bn.weight[4:6, None, None] +
                       bn.bias[4:6, None, None])
        torch.testing.assert_close(out[:, 6:8], y)
        # groups stay independent: changing group 2 leaves group 4's output
        x2 = x.clone()
        x2[:, 2:4] += 1
        torch.testing.assert_close(neck(x2)[:, 6:8], out[:, 6:8])
        assert not torch.allclose(neck(x2)[:, 2:4], out[:, 2:4])
    hier = MultiScaleNeck(8, scales=4, hierarchical=True,
                          residual=True).eval()
    hb = hier.blocks[0]
    with torch.no_grad():
        out = hier(x)
        g = torch.split(x, 2, dim=1)
        y2 = hb.convs[0](g[1])
        y3 = hb.convs[1](g[2] + y2)
        torch.testing.assert_close(out[:, 4:6], y3 + g[2])
        torch.testing.assert_close(out[:, :2], 2 * g[0])


@pytest.mark.parametrize('residual', [False, True])
def test_mfef_blocks_match_the_formulas_with_gradients(residual):
    """The fast forms (one split, ``first * 2`` for the residual, max with
    indices) give the values and gradients of the plain formulas, in
    training mode (batch statistics), on input without ties."""
    torch.manual_seed(0)
    ms = MultiScaleNeck(16, scales=4, residual=residual).blocks[0].train()
    da = DualAttentionNeck(16, reduction=4, kernel_size=3).blocks[0]
    x = torch.randn(3, 16, 5, 5, requires_grad=True)
    grad = torch.randn(3, 16, 5, 5)

    def reference(x):
        out = torch.cat([x[:, :4], ms.grouped(x[:, 4:])], dim=1)
        if residual:
            out = out + x
        mlp = da.channel_gate.mlp
        gate = torch.sigmoid(
            mlp(out.mean(dim=(2, 3), keepdim=True)) +
            mlp(out.amax(dim=(2, 3), keepdim=True)))
        out = out * gate
        stats = torch.cat([out.mean(1, keepdim=True),
                           out.amax(1, keepdim=True)], dim=1)
        return out * torch.sigmoid(da.spatial_gate.conv(stats))

    params = list(ms.parameters()) + list(da.parameters())
    fast = da(ms(x))
    fast_grads = torch.autograd.grad(fast, [x] + params, grad)
    slow = reference(x)
    slow_grads = torch.autograd.grad(slow, [x] + params, grad)
    torch.testing.assert_close(fast, slow)
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b)


def test_necks_move_like_modules():
    """``.to()`` (what the Runner does) reaches every block."""
    for neck in (MultiScaleNeck(16), DualAttentionNeck(16)):
        neck.to(torch.float64)
        out = neck(torch.randn(1, 16, 4, 4, dtype=torch.float64))
        assert out.dtype == torch.float64


def test_multi_scale_errors_and_tuples():
    with pytest.raises(ValueError, match='must split into scales=3'):
        MultiScaleNeck(64, scales=3)
    with pytest.raises(ValueError, match='in_channels must be a positive'):
        MultiScaleNeck(0)
    neck = MultiScaleNeck([16, 32], scales=4)
    outs = neck((torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 8, 8), (2, 32, 4, 4)]
    with pytest.raises(ValueError, match='built for 2 map'):
        neck(torch.randn(2, 16, 8, 8))
    with pytest.raises(ValueError, match=r'map 0 has shape \(2, 8, 8, 8\)'):
        MultiScaleNeck(16)(torch.randn(2, 8, 8, 8))


# ------------------------------------------------------------- dual attention
@pytest.mark.parametrize('gates', [('channel', 'spatial'),
                                   ('spatial', 'channel'), ('channel', ),
                                   ('spatial', )])
def test_dual_attention_shapes_and_parameters(gates):
    neck = DualAttentionNeck(64, reduction=16, kernel_size=7, gates=gates)
    assert neck(torch.randn(2, 64, 8, 8)).shape == (2, 64, 8, 8)
    expected = 0
    if 'channel' in gates:
        expected += 64 * 4 + 4 + 4 * 64 + 64  # two 1x1 convs with bias
    if 'spatial' in gates:
        expected += 2 * 7 * 7 + 1
    assert count_params(neck) == expected


def test_channel_gate_weights_each_channel():
    block = DualAttentionNeck(4, reduction=2, gates=('channel', )).blocks[0]
    x = torch.rand(2, 4, 3, 3) + 0.5
    weights = block.channel_gate(x)
    assert weights.shape == (2, 4, 1, 1)
    assert (weights > 0).all() and (weights < 1).all()
    out = block(x)
    # one factor per (sample, channel), the same at every location
    torch.testing.assert_close(out, x * weights)
    ratio = out / x
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio))


def test_spatial_gate_hand_example():
    block = DualAttentionNeck(2, kernel_size=1, gates=('spatial', )).blocks[0]
    conv = block.spatial_gate.conv
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
        conv.bias.zero_()
    # channels (1, 3) at one location and (0, 0) at the other
    x = torch.tensor([[[[1.0, 0.0]], [[3.0, 0.0]]]])  # (1, 2, 1, 2)
    weights = block.spatial_gate(x)
    # weight = sigmoid(mean over channels): sigmoid(2), sigmoid(0)
    expected = torch.sigmoid(torch.tensor([2.0, 0.0])).view(1, 1, 1, 2)
    torch.testing.assert_close(weights, expected)
    # one factor per location, shared by all channels
    torch.testing.assert_close(block(x), x * expected)


def test_attention_forced_to_one_is_identity(monkeypatch):
    neck = DualAttentionNeck(32)
    block = neck.blocks[0]
    monkeypatch.setattr(block.channel_gate, 'forward',
                        lambda x: torch.ones_like(x[:, :, :1, :1]))
    monkeypatch.setattr(block.spatial_gate, 'forward',
                        lambda x: torch.ones_like(x[:, :1]))
    x = torch.randn(2, 32, 4, 4)
    torch.testing.assert_close(neck(x), x)
    torch.testing.assert_close(neck((x, ))[0], x)


@pytest.mark.parametrize('kwargs, match', [
    (dict(gates=('channel', 'channel')), 'gates='),
    (dict(gates=('temporal', )), 'gates='),
    (dict(gates=()), 'gates='),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(reduction=0), 'reduction=0'),
])
def test_dual_attention_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DualAttentionNeck(32, **kwargs)


# ------------------------------------------------------------ in classifiers
def test_necks_in_a_plain_image_classifier():
    model = MODELS.build(
        dict(
            _scope_='ffl_mm',
            type='ImageClassifier',
            backbone=dict(type='CIFARResNet', depth=20),
            neck=[
                dict(type='MultiScaleNeck', in_channels=64),
                dict(type='DualAttentionNeck', in_channels=64),
                dict(type='GlobalAveragePooling')
            ],
            head=dict(type='LinearClsHead', num_classes=10,
                      in_channels=64)))
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    losses = model(torch.randn(2, 3, 32, 32), samples, mode='loss')
    losses['loss'].backward()
    assert model.neck[0].blocks[0].grouped.conv.weight.grad is not None


@pytest.mark.parametrize('heads_on_enhanced', [False, True])
def test_mfef_in_multi_branch_classifier(heads_on_enhanced):
    cfg = ffl_cfg(
        fusion_pre_neck=[
            dict(type='MultiScaleNeck'),
            dict(type='DualAttentionNeck')
        ],
        heads_on_enhanced=heads_on_enhanced)
    model = MODELS.build(cfg)
    ffl = MODELS.build(ffl_cfg())
    # in_channels came from the fusion neck; one chain per branch
    assert len(model.fusion_pre_necks) == 2
    assert model.fusion_pre_necks[1][0].in_channels == 64
    extra = count_params(model) - count_params(ffl)
    assert extra == 2 * (3 * (9 * 16 * 16 + 32) + (64 * 4 + 4 + 4 * 64 + 64)
                         + 99)
    x = torch.randn(2, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    losses = model(x, samples, mode='loss')
    assert 'loss_kd_fused' in losses
    model.zero_grad()
    losses['loss_ce_branch0'].backward(retain_graph=True)
    grad = model.fusion_pre_necks[0][0].blocks[0].grouped.conv.weight.grad
    # the branch CE reaches the MFEF modules only if heads see their maps
    assert (grad is not None) == heads_on_enhanced
    model.zero_grad()
    losses['loss_ce_fused'].backward()
    grad = model.fusion_pre_necks[1][1].blocks[0].spatial_gate.conv.weight
    assert grad.grad is not None and grad.grad.abs().sum() > 0


def test_mfef_configuration_errors():
    cfg = ffl_cfg(fusion_pre_neck=[dict(type='MultiScaleNeck')])
    for key in ('fusion_neck', 'fusion_head', 'distill_loss'):
        cfg[key] = None
    with pytest.raises(ValueError, match='fusion_neck and fusion_head are '
                       'both required'):
        MODELS.build(cfg)
    for key in ('fusion_neck', 'fusion_head', 'distill_loss'):
        del cfg[key]
    cfg['type'] = 'MultiBranchClassifier'
    with pytest.raises(TypeError, match='fusion_pre_neck belongs to '
                       'FFLClassifier'):
        MODELS.build(cfg)
    with pytest.raises(ValueError, match='heads_on_enhanced=True needs'):
        MODELS.build(ffl_cfg(heads_on_enhanced=True))


def test_init_weights_reaches_every_conv_module(monkeypatch):
    """MMEngine's init_weights only descends through BaseModules: every
    ConvModule of the fusion and MFEF modules must be reached."""
    from mmcv.cnn import ConvModule
    calls = []
    original = ConvModule.init_weights

    def spy(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(ConvModule, 'init_weights', spy)
    model = MODELS.build(
        heterogeneous_cfg(fusion_pre_neck=[dict(type='MultiScaleNeck')]))
    model.init_weights()
    expected = [m for m in model.modules() if isinstance(m, ConvModule)]
    # depthwise, pointwise, one projection, one grouped multi-scale conv
    # per branch
    assert len(expected) == 3 + 2 * 1
    assert {id(m) for m in calls} == {id(m) for m in expected}


def test_unknown_test_cfg_key():
    with pytest.raises(ValueError,
                       match=r"unknown test_cfg key\(s\) \['mode'\]"):
        MODELS.build(ffl_cfg(test_cfg=dict(mode='fused')))


def test_fusion_pre_necks_module():
    """One chain per branch, keys ``{i}.{j}.*``, channels per branch, and
    a clear error for channels of another number of branches."""
    from ffl_mm.models.necks import FusionPreNecks
    chains = FusionPreNecks(
        [dict(type='MultiScaleNeck', scales=2),
         dict(type='DualAttentionNeck')], [32, 64], 2)
    assert [chain[0].in_channels for chain in chains] == [32, 64]
    assert any(k.startswith('1.1.') for k in chains.state_dict())
    maps = [torch.randn(2, 32, 4, 4), torch.randn(2, 64, 2, 2)]
    assert [tuple(x.shape) for x in chains(maps)] == \
        [(2, 32, 4, 4), (2, 64, 2, 2)]
    assert len(FusionPreNecks(dict(type='DualAttentionNeck'), 16, 3)) == 3
    with pytest.raises(ValueError, match=r'in_channels=\[32, 64\] is for 2 '
                       r'branches, not 3'):
        FusionPreNecks(dict(type='DualAttentionNeck'), [32, 64], 3)


def test_dual_attention_keeps_the_batch_axis_dynamic_under_export():
    """torch.export (the ONNX exporter's front end) keeps the batch axis
    free: chunking the stacked statistics by a dynamic batch made it fix
    the batch to the example's, so an exported MFEF model took one batch
    size only."""
    neck = MODELS.build(dict(type='DualAttentionNeck', in_channels=16,
                             reduction=4)).eval()
    batch = torch.export.Dim('batch', min=1)
    program = torch.export.export(neck, (torch.randn(3, 16, 8, 8), ),
                                  dynamic_shapes=({0: batch}, ))
    x = torch.randn(5, 16, 8, 8)
    torch.testing.assert_close(program.module()(x), neck(x))
