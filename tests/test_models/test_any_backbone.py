# Copyright (c) ffl_mm contributors.
"""FFL on MMPretrain backbones: any family, heterogeneous, N > 2, shared
trunks, channel inference and pretrained weights."""
import copy

import pytest
import torch
from mmengine.runner import save_checkpoint
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from conftest import count_params, ffl_cfg
from helpers.backbone_cases import BACKBONES, NUM_CLASSES, ffl_on

def _step(model, size=32, batch=2):
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    samples = [DataSample().set_gt_label(i % NUM_CLASSES)
               for i in range(batch)]
    losses = model(x, samples, mode='loss')
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    total.backward()
    return x, losses


@pytest.mark.parametrize('name', list(BACKBONES))
def test_ffl_x2_on_mmpretrain_backbones(name):
    backbone, channels = BACKBONES[name]
    model = MODELS.build(ffl_on(copy.deepcopy(backbone)))
    model.init_weights()
    assert model.fusion_neck.in_channels == [channels, channels]
    assert [h.in_channels for h in model.heads] == [channels, channels]
    assert model.fusion_head.in_channels == model.fusion_neck.out_channels
    x, losses = _step(model)
    assert set(losses) == {
        'loss_ce_branch0', 'loss_ce_branch1', 'loss_ce_fused',
        'loss_kd_branch0', 'loss_kd_branch1', 'loss_kd_fused', 'kd_weight'
    }
    # every branch and the fusion module learn
    for module in (*model.backbones, model.fusion_neck):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(x, mode='tensor')
    assert set(out) == {'branch0', 'branch1', 'ensemble', 'fused'}
    for logits in out.values():
        assert logits.shape == (2, NUM_CLASSES)


def dml_on(backbone, num_branches=2, **kwargs):
    """DML: independent branches, peer distillation, no fusion."""
    cfg = dict(
        type='DMLClassifier',
        backbone=backbone,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES),
        distill_loss=dict(type='PeerKDLoss', temperature=3.0))
    if not isinstance(backbone, list):
        cfg['num_branches'] = num_branches
    cfg.update(kwargs)
    return cfg


def one_on(backbone, num_branches=2, **kwargs):
    """ONE: a gated ensemble teaches the branches (the gate on the images
    for backbones without a shared trunk)."""
    cfg = dict(
        type='ONEClassifier',
        backbone=backbone,
        num_branches=num_branches,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES),
        ensemble_head=dict(type='GatedEnsembleHead', gate_input='input'),
        distill_loss=dict(type='TeacherKDLoss', rampup=0))
    cfg.update(kwargs)
    return cfg


@pytest.mark.parametrize('name', list(BACKBONES))
def test_dml_and_one_on_mmpretrain_backbones(name):
    backbone, channels = BACKBONES[name]
    dml = MODELS.build(dml_on(copy.deepcopy(backbone)))
    one = MODELS.build(one_on(copy.deepcopy(backbone)))
    for model, ce in ((dml, set()), (one, {'loss_ce_ensemble'})):
        assert [h.in_channels for h in model.heads] == [channels, channels]
        x, losses = _step(model)
        assert set(losses) == {
            'loss_ce_branch0', 'loss_ce_branch1', 'loss_kd_branch0',
            'loss_kd_branch1', 'kd_weight'} | ce
        for module in model.backbones:
            grads = [p.grad for p in module.parameters() if p.requires_grad]
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        model.eval()
        with torch.no_grad():
            out = model(x, mode='tensor')
        assert set(out) == {'branch0', 'branch1', 'ensemble'}
        assert model.predict_mode == 'ensemble'
    assert one.ensemble_head.fc.weight.grad.abs().sum() > 0
    with torch.no_grad():
        out = one(x, mode='tensor')
        weights = one.ensemble_head.gate(x)
    torch.testing.assert_close(
        out['ensemble'], weights[:, :1] * out['branch0'] +
        weights[:, 1:] * out['branch1'])


def test_dml_with_different_networks_and_one_refuses_them():
    pair = [dict(type='CIFARResNet', depth=20),
            dict(type='WideResNet', depth=16, widen_factor=2)]
    model = MODELS.build(dml_on(copy.deepcopy(pair)))
    assert [h.in_channels for h in model.heads] == [64, 128]
    _step(model)
    cfg = one_on(None)
    cfg.pop('num_branches')
    cfg['backbone'] = pair
    with pytest.raises(ValueError, match='the gated ensemble weighs the '
                       'logits of identical branches'):
        MODELS.build(cfg)


@pytest.mark.parametrize('pair, channels', [
    # ImageNet ResNet-18 (1x1 map at 32 px) + MobileNetV2 (1x1, 1280 ch)
    ([dict(type='ResNet', depth=18),
      dict(type='MobileNetV2', widen_factor=0.5)], [512, 1280]),
    # CIFAR ResNet-32 (8x8, 64 ch) + WRN-16-2 (8x8, 128 ch)
    ([dict(type='CIFARResNet', depth=32),
      dict(type='WideResNet', depth=16, widen_factor=2)], [64, 128]),
    # ResNet_CIFAR-18 (4x4 map) + ShuffleNetV2 (1x1): the sizes differ
    ([dict(type='ResNet_CIFAR', depth=18),
      dict(type='ShuffleNetV2', widen_factor=0.5)], [512, 1024]),
])
def test_heterogeneous_pairs(pair, channels):
    model = MODELS.build(ffl_on(pair))
    assert model.num_branches == 2
    assert model.fusion_neck.in_channels == channels
    assert [h.in_channels for h in model.heads] == channels
    x, _ = _step(model)
    model.eval()
    with torch.no_grad():
        maps = model.forward_features(x).fusion_maps
        fused = model.fusion_neck.fuse(maps)
    # aligned to the smallest map, projected to the widest channels
    assert fused.shape[2:] == tuple(
        min(m.shape[d] for m in maps) for d in (2, 3))
    assert fused.shape[1] == max(channels)


@pytest.mark.parametrize('num_branches', [3, 4, 8])
def test_more_branches(num_branches):
    model = MODELS.build(
        ffl_cfg(depth=20, num_branches=num_branches,
                fusion_neck=dict(type='FFLFusionNeck')))
    assert model.fusion_neck.in_channels == [64] * num_branches
    x, losses = _step(model, batch=3)
    assert sum(k.startswith('loss_ce_branch') for k in losses) == \
        num_branches
    assert sum(k.startswith('loss_kd_branch') for k in losses) == \
        num_branches
    model.eval()
    with torch.no_grad():
        out = model(x, mode='tensor')
    stacked = torch.stack([out[f'branch{i}'] for i in range(num_branches)])
    torch.testing.assert_close(out['ensemble'], stacked.mean(dim=0))
    # the trunk (stem, stages 1-2) is counted once, stage 3 N times
    single = MODELS.build(dict(type='CIFARResNet', depth=20))
    late = count_params(single.layer3)
    heads = num_branches * (64 * 10 + 10)
    fusion = count_params(model.fusion_neck) + \
        count_params(model.fusion_head)
    assert count_params(model) == count_params(single) + \
        (num_branches - 1) * late + heads + fusion


@pytest.mark.parametrize('backbone, shared, late', [
    (dict(type='ResNet', depth=18), 2, ('layer3', 'layer4')),
    (dict(type='ResNetV1c', depth=18), 3, ('layer4', )),
    (dict(type='ResNetV1d', depth=18), 1, ('layer2', 'layer3', 'layer4')),
    (dict(type='ResNet_CIFAR', depth=18), 2, ('layer3', 'layer4')),
    (dict(type='WideResNet', depth=16, widen_factor=2), 2, ('layer3', )),
])
def test_shared_trunk_for_the_resnet_family(backbone, shared, late):
    model = MODELS.build(ffl_on(backbone, shared_stages=shared))
    single = MODELS.build(backbone)
    late_params = sum(count_params(getattr(single, name)) for name in late)
    heads = count_params(model.heads)
    fusion = count_params(model.fusion_neck) + \
        count_params(model.fusion_head)
    assert count_params(model) == \
        count_params(single) + late_params + heads + fusion
    assert sorted(model.backbones[1]._modules) == sorted(late)
    _step(model)


@pytest.mark.parametrize('shared_stages', [0, 2])
def test_pretrained_weights_reach_trunk_and_every_branch(
        tmp_path, shared_stages):
    # a checkpoint of a plain MMPretrain classifier, as a user would have
    torch.manual_seed(1)
    source = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=7,
                      in_channels=512)))
    path = str(tmp_path / 'resnet18.pth')
    save_checkpoint(dict(state_dict=source.state_dict()), path)
    backbone = dict(
        type='ResNet',
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint=path,
                      prefix='backbone'))
    model = MODELS.build(ffl_on(backbone, num_branches=3,
                                shared_stages=shared_stages))
    model.init_weights()
    expected = source.backbone.state_dict()
    for i, copy_ in enumerate(model.backbones):
        state = copy_.state_dict()
        if i == 0 or not shared_stages:
            assert set(state) == set(expected)
        else:  # the copies hold only their own late stages
            assert all(k.startswith(('layer3.', 'layer4.')) for k in state)
        for key, value in state.items():
            torch.testing.assert_close(value, expected[key], msg=key)


def test_pretrained_weights_in_the_whole_model(tmp_path):
    """init_cfg on the classifier: a multi-branch checkpoint round trip."""
    torch.manual_seed(2)
    source = MODELS.build(ffl_cfg())
    path = str(tmp_path / 'ffl.pth')
    save_checkpoint(dict(state_dict=source.state_dict()), path)
    model = MODELS.build(
        ffl_cfg(init_cfg=dict(type='Pretrained', checkpoint=path)))
    model.init_weights()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key], msg=key)


def test_several_out_indices_and_fusion_in_index():
    backbone = dict(type='ResNet', depth=18, out_indices=(2, 3))
    model = MODELS.build(ffl_on(backbone))
    assert model.fusion_neck.in_channels == [512, 512]
    model = MODELS.build(ffl_on(backbone, fusion_in_index=0))
    assert model.fusion_neck.in_channels == [256, 256]
    # the branch heads still read the last output
    assert [h.in_channels for h in model.heads] == [512, 512]
    _step(model)
    with pytest.raises(ValueError, match=r'fusion_in_index=2 but branch 0'):
        MODELS.build(ffl_on(backbone, fusion_in_index=2))


@pytest.mark.parametrize('change, match', [
    (dict(head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                    in_channels=256)),
     r'head of branch 0 has in_channels=256 but gets 512 channels \(branch '
     r'0\'s ResNet gives a map \(2, 512, 2, 2\) for a 64 px probe\); set '
     r'in_channels=512'),
    (dict(head=[dict(type='LinearClsHead', num_classes=NUM_CLASSES),
                dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                     in_channels=64)]),
     r'head of branch 1 has in_channels=64 but .* 512'),
    (dict(fusion_neck=dict(type='FFLFusionNeck', in_channels=[512, 256])),
     r'fusion_neck.in_channels=\[512, 256\] but branch 1\'s ResNet gives a '
     r'map \(2, 512, 2, 2\) for a 64 px probe \(all branches: \[512, 512\]'),
    (dict(fusion_head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                           in_channels=100)),
     r'fusion_head has in_channels=100 but gets 512 channels \(the fusion '
     r'neck gives a vector \(2, 512\)\)'),
    (dict(head=[dict(type='LinearClsHead', num_classes=5),
                dict(type='LinearClsHead', num_classes=6)]),
     r'same classes, got head of branch 0: num_classes=5, head of branch '
     r'1: num_classes=6'),
    (dict(fusion_head=dict(type='LinearClsHead', num_classes=10)),
     r'fusion_head: num_classes=10'),
])
def test_channel_and_class_mismatches_are_named(change, match):
    cfg = ffl_on(dict(type='ResNet', depth=18))
    cfg.update(change)
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg)


@pytest.mark.parametrize('backbone, match', [
    (dict(type='VisionTransformer', arch='deit-tiny', img_size=32,
          patch_size=16),
     r"VisionTransformer gives a vector \(2, 192\) for a 64 px probe; the "
     r"fusion neck needs a map.*out_type='featmap'"),
    (dict(type='VisionTransformer', arch='deit-tiny', img_size=32,
          patch_size=16, out_type='raw'),
     r'gives a token sequence \(2, 17, 192\) for a 64 px probe'),
    (dict(type='ConvNeXt', arch='atto'),
     r'ConvNeXt gives a vector \(2, 320\).*gap_before_final_norm=False'),
])
def test_outputs_that_are_not_maps_are_refused(backbone, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(ffl_on(backbone))


@pytest.mark.parametrize('head_in', [320, None])
def test_branch_neck_that_fails_on_the_probe_is_named(head_in):
    """A vector backbone with a pooling neck: the neck's failure names the
    branch, the neck and what the backbone gives (it was an
    UnboundLocalError)."""
    head = dict(type='LinearClsHead', num_classes=NUM_CLASSES)
    if head_in:
        head['in_channels'] = head_in
    cfg = dict(
        type='MultiBranchClassifier',
        num_branches=2,
        backbone=dict(type='ConvNeXt', arch='atto',
                      gap_before_final_norm=True),
        head=head)
    with pytest.raises(ValueError, match=r'the neck of branch 0 '
                       r'\(GlobalAveragePooling\) fails on what its backbone '
                       r'gives \(branch 0\'s ConvNeXt gives a vector \(2, '
                       r'320\) for a 64 px probe\).*neck=None'):
        MODELS.build(cfg)
    cfg['neck'] = None
    model = MODELS.build(cfg)
    assert [h.in_channels for h in model.heads] == [320, 320]
    cfg['head'] = dict(head, in_channels=100)
    with pytest.raises(ValueError, match=r'head of branch 0 has '
                       r'in_channels=100 but gets 320 channels \(branch 0\'s '
                       r'ConvNeXt gives a vector \(2, 320\)'):
        MODELS.build(cfg)


def test_vit_class_token_branches_without_fusion():
    """Without a fusion neck, token outputs are fine: CE-only branches."""
    cfg = dict(
        type='MultiBranchClassifier',
        num_branches=2,
        backbone=dict(type='VisionTransformer', arch='deit-tiny',
                      img_size=32, patch_size=16),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES))
    model = MODELS.build(cfg)
    assert model.heads[0].in_channels == 192
    _step(model)


class FixedInputNet(torch.nn.Module):
    """A backbone that only runs on 96 x 96 images (as fixed-size token
    mixers do): the 64 px build-time probe fails on it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=32)

    def forward(self, x):
        if x.shape[-2:] != (96, 96):
            raise RuntimeError('FixedInputNet needs 96 x 96 inputs')
        return (self.conv(x), )


MODELS.register_module('FixedInputNet', module=FixedInputNet, force=True)


def test_backbone_that_cannot_be_probed_needs_explicit_channels():
    with pytest.raises(ValueError, match=r'head of branch 0 has no '
                       r'in_channels and it could not be inferred \(running '
                       r'the branches on a \(2, 3, 64, 64\) probe failed: '
                       r".*needs 96 x 96.*set head.in_channels"):
        MODELS.build(ffl_on(dict(type='FixedInputNet')))
    explicit = ffl_on(
        dict(type='FixedInputNet'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=8),
        fusion_neck=dict(type='FFLFusionNeck', in_channels=8,
                         num_branches=2),
        fusion_head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                         in_channels=8))
    model = MODELS.build(explicit)
    _step(model, size=96)


@pytest.mark.parametrize('name,shared', [('ResNet_CIFAR-18', 2),
                                         ('RegNet', 1), ('ResNeXt-50', 2)])
def test_clilr_on_mmpretrain_backbones_with_a_shared_trunk(name, shared):
    """CL-ILR needs a trunk to share (and rescale): staged backbones."""
    backbone, channels = BACKBONES[name]
    model = MODELS.build(dict(
        type='CLILRClassifier', backbone=copy.deepcopy(backbone),
        num_branches=3, shared_stages=shared,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES),
        distill_loss=dict(type='PeerKDLoss', temperature=3.0,
                          peer_target='mean_logits', detach_peers=False)))
    assert [h.in_channels for h in model.heads] == [channels] * 3
    _, losses = _step(model)
    assert {f'loss_kd_branch{i}' for i in range(3)} <= set(losses)
    assert model.backbones[0].parameters().__next__().grad is not None


def test_clilr_on_a_backbone_that_cannot_share_says_so():
    backbone, _ = BACKBONES['MobileNetV2']
    with pytest.raises(TypeError, match='MobileNetV2 has no .res_layers.'):
        MODELS.build(dict(
            type='CLILRClassifier', backbone=copy.deepcopy(backbone),
            num_branches=3, shared_stages=1,
            head=dict(type='LinearClsHead', num_classes=NUM_CLASSES)))


@pytest.mark.parametrize('name,shared', [('ResNet_CIFAR-18', 2),
                                         ('MobileNetV2', 0), ('ViT', 0)])
def test_okddip_on_mmpretrain_backbones(name, shared):
    backbone, channels = BACKBONES[name]
    model = MODELS.build(dict(
        type='OKDDipClassifier', backbone=copy.deepcopy(backbone),
        num_branches=3, shared_stages=shared,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES),
        distill_loss=dict(type='DiversePeerKDLoss')))
    assert model.peer_attention.in_channels == channels
    _, losses = _step(model)
    assert set(losses) == {
        'loss_ce_branch0', 'loss_ce_branch1', 'loss_ce_branch2',
        'loss_kd_branch0', 'loss_kd_branch1', 'loss_kd_branch2',
        'kd_weight'}
    # the attention learns through the targets
    assert model.peer_attention.query.weight.grad.abs().sum() > 0
