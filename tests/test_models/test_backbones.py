# Copyright (c) ffl_mm contributors.
import pytest
import torch
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from conftest import count_params


def _plain(backbone, in_channels, num_classes):
    # _scope_: MMPretrain's ImageClassifier builds its backbone in the
    # current scope, which must be ffl_mm's for CIFARResNet
    return MODELS.build(
        dict(
            _scope_='ffl_mm',
            type='ImageClassifier',
            backbone=backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=num_classes,
                in_channels=in_channels)))


@pytest.mark.parametrize('depth, num_classes, params', [
    (32, 100, 472756),
    (32, 10, 466906),
    (110, 100, 1736564),
])
def test_cifar_resnet_parameter_counts(depth, num_classes, params):
    """The authors' counts (shared/METHODS.md)."""
    model = _plain(dict(type='CIFARResNet', depth=depth), 64, num_classes)
    assert count_params(model) == params


def test_cifar_resnet_stages_and_shapes():
    backbone = MODELS.build(
        dict(type='CIFARResNet', depth=20, out_indices=(0, 1, 2)))
    assert backbone.res_layers == ['layer1', 'layer2', 'layer3']
    assert [len(getattr(backbone, n)) for n in backbone.res_layers] == [3] * 3
    outs = backbone(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 32),
                                              (2, 32, 16, 16),
                                              (2, 64, 8, 8)]
    # 1x1 conv (stride 2) + BN shortcut where the stage changes
    down = backbone.layer2[0].downsample
    assert down[0].kernel_size == (1, 1) and down[0].stride == (2, 2)
    assert isinstance(down[1], torch.nn.BatchNorm2d)
    assert backbone.layer1[0].downsample is None


def test_wide_resnet_shapes_and_parameters():
    backbone = MODELS.build(
        dict(type='WideResNet', depth=16, widen_factor=2,
             out_indices=(0, 1, 2)))
    outs = backbone(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 32, 32),
                                              (2, 64, 16, 16),
                                              (2, 128, 8, 8)]
    # the last stage ends with the final BN + ReLU: non-negative output
    assert outs[-1].min() >= 0
    # hand count of WRN-16-2's backbone: stem 432; per stage two blocks of
    # BN+conv+BN+conv (+1x1 shortcut in the first block)

    def block(cin, cout, shortcut):
        return 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout + (
            cin * cout if shortcut else 0)
    expected = 3 * 9 * 16
    expected += block(16, 32, True) + block(32, 32, False)
    expected += block(32, 64, True) + block(64, 64, False)
    expected += block(64, 128, True) + block(128, 128, False) + 2 * 128
    assert count_params(backbone) == expected == 690384


def test_backbones_in_plain_image_classifier():
    for backbone, channels in ((dict(type='CIFARResNet', depth=20), 64),
                               (dict(type='WideResNet', depth=10,
                                     widen_factor=1), 64)):
        model = _plain(backbone, channels, 10)
        model.init_weights()
        x = torch.randn(4, 3, 32, 32)
        samples = [DataSample().set_gt_label(i) for i in range(4)]
        losses = model(x, samples, mode='loss')
        losses['loss'].backward()
        assert torch.isfinite(losses['loss'])


@pytest.mark.parametrize('cfg, match', [
    (dict(type='CIFARResNet', depth=30), 'depth=30 is not 6n\\+2'),
    (dict(type='WideResNet', depth=15), 'depth=15 must be 6n\\+4'),
    (dict(type='WideResNet', depth=16, widen_factor=0), 'widen_factor'),
    (dict(type='WideResNet', depth=16, out_indices=(3, )), 'out_indices'),
])
def test_bad_backbone_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg)


def test_wide_resnet_frozen_stages():
    backbone = MODELS.build(
        dict(type='WideResNet', depth=10, frozen_stages=1))
    backbone.train()
    assert not any(p.requires_grad for p in backbone.conv1.parameters())
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert not backbone.layer1.training and backbone.layer2.training


@pytest.mark.parametrize('depth, n', [(8, 1), (14, 2), (26, 4), (32, 5),
                                      (1202, 200)])
def test_cifar_resnet_any_6n_plus_2(depth, n):
    backbone = MODELS.build(dict(type='CIFARResNet', depth=depth))
    assert [len(getattr(backbone, name)) for name in backbone.res_layers] \
        == [n, n, n]
    if depth <= 32:
        assert tuple(backbone(torch.randn(1, 3, 32, 32))[-1].shape) == \
            (1, 64, 8, 8)


@pytest.mark.parametrize('depth', [2, 7, 9, 18, 34, 0, -4, 20.0, '20', True])
def test_cifar_resnet_other_depths_are_refused(depth):
    with pytest.raises(ValueError, match=r'depth=.*6n\+2 with n >= 1'):
        MODELS.build(dict(type='CIFARResNet', depth=depth))
