# Copyright (c) ffl_mm contributors.
"""MultiBranchClassifier, the base of every method: the shared trunk,
the loss terms and their names, every predict mode and feature stage,
heterogeneous branches, the cross-entropy floor and the configuration
errors (built through FFL's config where a teacher output is needed)."""
import copy
import math

import pytest
import torch
from mmengine.logging import MessageHub
from ffl_mm.registry import MODELS

import ffl_mm  # noqa: F401
from conftest import ffl_cfg, heterogeneous_cfg, make_batch


def test_trunk_is_shared_and_branches_are_not():
    model = MODELS.build(ffl_cfg())
    assert hasattr(model.backbones[0], 'layer1')
    assert not hasattr(model.backbones[1], 'layer1')
    assert not hasattr(model.backbones[1], 'conv1')
    assert model.backbones[0].layer3 is not model.backbones[1].layer3
    x, samples = make_batch()
    losses = model(x, samples, mode='loss')
    # the trunk learns from both branches' cross-entropy
    model.zero_grad()
    losses['loss_ce_branch1'].backward(retain_graph=True)
    assert model.backbones[0].layer1[0].conv1.weight.grad.abs().sum() > 0
    assert model.backbones[0].layer3[0].conv1.weight.grad is None
    # the fused CE trains the sub-networks through the (non-detached) maps
    model.zero_grad()
    losses['loss_ce_fused'].backward()
    assert model.backbones[1].layer3[0].conv1.weight.grad.abs().sum() > 0


def test_loss_keys_and_values():
    model = MODELS.build(ffl_cfg(num_branches=3))
    x, samples = make_batch()
    hub = MessageHub.get_current_instance()
    old = hub.get_info('epoch')
    hub.update_info('epoch', 40)
    try:
        losses = model(x, samples, mode='loss')
    finally:
        hub.update_info('epoch', old)
    assert set(losses) == {
        'loss_ce_branch0', 'loss_ce_branch1', 'loss_ce_branch2',
        'loss_ce_fused', 'loss_kd_branch0', 'loss_kd_branch1',
        'loss_kd_branch2', 'loss_kd_fused', 'kd_weight'
    }
    assert losses['kd_weight'].item() == pytest.approx(math.exp(-1.25))
    # each CE term equals MMPretrain's CE on that output's logits
    logits = model(x, mode='tensor')
    target = torch.tensor([s.gt_label.item() for s in samples])
    for name in ('branch0', 'branch2', 'fused'):
        ce = torch.nn.functional.cross_entropy(logits[name], target)
        assert losses[f'loss_ce_{name}'].item() == pytest.approx(
            ce.item(), rel=1e-5)
    parsed, log_vars = model.parse_losses(losses)
    # kd_weight is logged but not summed into the loss
    assert 'kd_weight' in log_vars
    expected = sum(v.item() for k, v in losses.items() if 'loss' in k)
    assert parsed.item() == pytest.approx(expected, rel=1e-5)


def test_tensor_mode_returns_every_output():
    model = MODELS.build(ffl_cfg())
    x, _ = make_batch()
    logits = model(x)
    assert set(logits) == {'branch0', 'branch1', 'ensemble', 'fused'}
    assert all(v.shape == (4, 10) for v in logits.values())
    torch.testing.assert_close(logits['ensemble'],
                               (logits['branch0'] + logits['branch1']) / 2)


@pytest.mark.parametrize('mode', ['fused', 'ensemble', 'branch0', 'branch1'])
def test_predict_fields_for_every_mode(mode):
    model = MODELS.build(ffl_cfg(test_cfg=dict(predict=mode)))
    model.eval()
    x, samples = make_batch()
    with torch.no_grad():
        logits = model(x)
        preds = model(x, samples, mode='predict')
    assert len(preds) == 4
    for i, sample in enumerate(preds):
        expected = torch.softmax(logits[mode][i], dim=0)
        torch.testing.assert_close(sample.pred_score, expected)
        assert sample.pred_label.item() == expected.argmax().item()
        assert sample.branch_scores.shape == (2, 10)
        torch.testing.assert_close(sample.branch_scores[1],
                                   torch.softmax(logits['branch1'][i], 0))
        torch.testing.assert_close(sample.ensemble_score,
                                   torch.softmax(logits['ensemble'][i], 0))
        torch.testing.assert_close(sample.fused_score,
                                   torch.softmax(logits['fused'][i], 0))
        assert sample.gt_label.item() == samples[i].gt_label.item()


def test_predict_without_data_samples():
    model = MODELS.build(ffl_cfg()).eval()
    x, _ = make_batch(n=3)
    with torch.no_grad():
        preds = model(x, mode='predict')
    assert len(preds) == 3 and preds[0].pred_score.shape == (10, )


@pytest.mark.parametrize('mode, stage, shapes', [
    ('fused', 'backbone', [(2, 64, 8, 8), (2, 64, 8, 8)]),
    ('fused', 'neck', [(2, 64)]),
    ('fused', 'pre_logits', [(2, 64)]),
    ('branch1', 'backbone', [(2, 64, 8, 8)]),
    ('branch1', 'neck', [(2, 64)]),
    ('ensemble', 'neck', [(2, 64), (2, 64)]),
])
def test_extract_feat(mode, stage, shapes):
    model = MODELS.build(ffl_cfg(test_cfg=dict(predict=mode))).eval()
    x, _ = make_batch(n=2)
    with torch.no_grad():
        feats = model.extract_feat(x, stage=stage)
    assert [tuple(f.shape) for f in feats] == shapes


def test_each_head_term_is_named_after_its_loss():
    """A cross-entropy head logs ``loss_ce_<output>``; a head with another
    loss keeps that loss's name (label smoothing: ``loss_ls_<output>``),
    so the log does not call it a cross-entropy."""
    smooth = dict(type='LabelSmoothLoss', label_smooth_val=0.1)
    cfg = ffl_cfg()
    cfg['fusion_head'] = dict(cfg['fusion_head'], loss=smooth)
    model = MODELS.build(cfg)
    x, samples = make_batch()
    losses = model(x, samples, mode='loss')
    assert {'loss_ce_branch0', 'loss_ce_branch1', 'loss_ls_fused'} <= \
        set(losses)
    assert 'loss_ce_fused' not in losses


def test_cross_entropy_only_variant():
    """The base class alone: the branches with cross-entropy. A method's
    argument is refused on it even as None (a config that inherits one
    drops it with ``_delete_=True``), naming the class that takes it."""
    cfg = ffl_cfg(type='MultiBranchClassifier', distill_loss=None,
                  fusion_neck=None)
    with pytest.raises(TypeError, match=r'got fusion_neck=None: fusion_neck '
                       r'belongs to FFLClassifier.*_delete_=True'):
        MODELS.build(cfg)
    del cfg['fusion_neck'], cfg['fusion_head']
    model = MODELS.build(cfg)
    assert not hasattr(model, 'fusion_neck')
    assert model.predict_mode == 'ensemble'
    x, samples = make_batch()
    assert set(model(x, samples, mode='loss')) == {
        'loss_ce_branch0', 'loss_ce_branch1'
    }


def test_independent_heterogeneous_branches():
    model = MODELS.build(heterogeneous_cfg())
    assert model.num_branches == 2
    x, samples = make_batch()
    losses = model(x, samples, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert model.backbones[1].layer1[0].conv1.weight.grad is not None


@pytest.mark.parametrize('change, error, match', [
    (dict(num_branches=1), ValueError, 'num_branches=1'),
    (dict(num_branches=None), ValueError, 'set num_branches'),
    (dict(backbone=[dict(type='CIFARResNet', depth=20)] * 3), ValueError,
     'num_branches=2 but 3 backbone configs'),
    (dict(head=[dict(type='LinearClsHead', num_classes=10,
                     in_channels=64)] * 3), ValueError,
     'head is a list of 3 configs but there are 2 branches'),
    (dict(test_cfg=dict(predict='best')), ValueError,
     "unknown test_cfg predict='best'"),
    (dict(test_cfg=dict(predict='branch2')), ValueError,
     "predict='branch2'"),
    (dict(shared_stages=3), ValueError, 'shared_stages=3 is out of range'),
    (dict(shared_stages=-1), ValueError, 'shared_stages=-1 is out of range'),
    (dict(backbone=dict(type='MobileNetV2', widen_factor=0.5),
          shared_stages=1), TypeError, 'MobileNetV2 has no `res_layers`'),
    (dict(backbone=dict(type='CIFARResNet', depth=20, frozen_stages=1)),
     ValueError, 'frozen_stages=1 cannot be combined'),
    (dict(fusion_head=None), ValueError, 'fusion_neck and fusion_head are '
     'both required'),
    (dict(type='MultiBranchClassifier', fusion_neck=None, fusion_head=None),
     TypeError, 'MultiBranchClassifier got fusion_neck=None: fusion_neck '
     'belongs to FFLClassifier'),
    (dict(head=None), ValueError, 'head` config is required'),
    # a method's argument on another method's class, or on the base
    (dict(type='MultiBranchClassifier'), TypeError,
     "fusion_neck belongs to FFLClassifier; use type='FFLClassifier'"),
    (dict(ensemble_head=dict(type='GatedEnsembleHead')), TypeError,
     "FFLClassifier got ensemble_head=.* belongs to ONEClassifier"),
    (dict(branch_update='together'), TypeError,
     'branch_update belongs to DMLClassifier'),
    (dict(fusion_nek=dict(type='FFLFusionNeck')), TypeError,
     r"FFLClassifier got unexpected argument\(s\) \['fusion_nek'\]"),
])
def test_configuration_errors(change, error, match):
    cfg = ffl_cfg()
    cfg.update(copy.deepcopy(change))
    with pytest.raises(error, match=match):
        MODELS.build(cfg)


@pytest.mark.parametrize('where', ['head', 'fusion_head'])
def test_negative_cross_entropy_weights_are_refused(where):
    cfg = ffl_cfg()
    cfg[where] = dict(cfg[where], loss=dict(type='CrossEntropyLoss',
                                            loss_weight=-1.0))
    with pytest.raises(ValueError, match=rf'{where}.loss: loss_weight must '
                       r'be >= 0, got -1'):
        MODELS.build(cfg)
