# Copyright (c) ffl_mm contributors.
"""Test-time augmentation averages every output of a multi-branch model."""
import pytest
import torch
from ffl_mm.registry import MODELS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401
from conftest import shipped_config


def _model():
    return MODELS.build(
        dict(type='FFLClassifier', num_branches=2,
             backbone=dict(type='CIFARResNet', depth=8),
             head=dict(type='LinearClsHead', num_classes=3),
             fusion_neck=dict(type='FFLFusionNeck'),
             fusion_head=dict(type='LinearClsHead', num_classes=3)))


def _view(pred, branches, ensemble, fused, label=1):
    s = DataSample().set_gt_label(label).set_pred_score(torch.tensor(pred))
    s.set_pred_label(torch.tensor(pred).argmax(dim=0, keepdim=True))
    s.set_field(torch.tensor(branches), 'branch_scores')
    s.set_field(torch.tensor(ensemble), 'ensemble_score')
    s.set_field(torch.tensor(fused), 'fused_score')
    return s


def test_two_views_average_every_score_by_hand():
    tta = MODELS.build(dict(type='MultiBranchTTA', module=_model()))
    a = _view([0.7, 0.2, 0.1], [[0.6, 0.3, 0.1], [0.1, 0.8, 0.1]],
              [0.35, 0.55, 0.1], [0.7, 0.2, 0.1])
    b = _view([0.1, 0.3, 0.6], [[0.2, 0.2, 0.6], [0.3, 0.3, 0.4]],
              [0.25, 0.25, 0.5], [0.1, 0.3, 0.6])
    merged, = tta.merge_preds([[a, b]])
    close = dict(atol=1e-7, rtol=0)
    torch.testing.assert_close(merged.pred_score,
                               torch.tensor([0.4, 0.25, 0.35]), **close)
    # the argmax of the averaged score, not view 0's label (0)
    assert merged.pred_label.tolist() == [0]
    torch.testing.assert_close(
        merged.branch_scores,
        torch.tensor([[0.4, 0.25, 0.35], [0.2, 0.55, 0.25]]), **close)
    torch.testing.assert_close(merged.ensemble_score,
                               torch.tensor([0.3, 0.4, 0.3]), **close)
    torch.testing.assert_close(merged.fused_score,
                               torch.tensor([0.4, 0.25, 0.35]), **close)
    assert merged.gt_label.tolist() == [1]


def test_tta_of_the_model_agrees_with_predict_on_each_view():
    """Through ``test_step`` on two views (the image and its flip), every
    merged score is the mean of ``predict``'s scores on the two views, and
    with ``predict='fused'`` the selected score is the fused one."""
    model = _model().eval()
    tta = MODELS.build(dict(type='MultiBranchTTA', module=model)).eval()
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    views = [x, x.flip(-1)]
    data = dict(inputs=[[v[i] for i in range(2)] for v in views],
                data_samples=[[DataSample().set_gt_label(0)
                               for _ in range(2)] for _ in views])
    with torch.no_grad():
        merged = tta.test_step(data)
        per_view = [model.test_step(dict(
            inputs=list(v), data_samples=[DataSample() for _ in range(2)]))
            for v in views]
    for i, sample in enumerate(merged):
        for field in ('pred_score', 'branch_scores', 'ensemble_score',
                      'fused_score'):
            want = (per_view[0][i].get(field) + per_view[1][i].get(field)) / 2
            torch.testing.assert_close(sample.get(field), want)
        torch.testing.assert_close(sample.pred_score, sample.fused_score)


@pytest.mark.parametrize('config', [
    'configs/ffl/ffl_resnet32x2_cifar100.py',
    'configs/mfef/mfef_resnet32x2_digits.py',
    'configs/ffl/ffl_resnet34x2_imagenet.py',
])
def test_multi_branch_configs_name_their_tta_model(config):
    assert shipped_config(config).tta_model == dict(
        type='MultiBranchTTA')


@pytest.mark.parametrize('config', [
    'configs/ffl/ffl_resnet32x2_digits.py',
    'configs/dml/dml_resnet32x2_digits.py',
    'configs/baselines/resnet32_digits.py',
])
def test_digits_tta_shifts_by_a_pixel_and_never_mirrors(config):
    """--tta on the digits configs: the image and four one-pixel shifts
    (reflect padding), never the horizontal flip of MMPretrain's default
    TTA (mirrored digits are not digits)."""
    import numpy as np
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    cfg = shipped_config(config)
    assert 'RandomFlip' not in str(cfg.tta_pipeline)
    img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        views = Compose(cfg.tta_pipeline)(dict(img=img.copy()))['inputs']
    assert len(views) == 5
    chw = torch.from_numpy(img).permute(2, 0, 1)
    torch.testing.assert_close(views[0], chw)
    # content moved one pixel right: column j shows column j - 1, and the
    # new first column is the reflection of column 1
    torch.testing.assert_close(views[1][:, :, 1:], chw[:, :, :-1])
    torch.testing.assert_close(views[1][:, :, 0], chw[:, :, 1])
    torch.testing.assert_close(views[2][:, :, :-1], chw[:, :, 1:])
    torch.testing.assert_close(views[3][:, 1:, :], chw[:, :-1, :])
    torch.testing.assert_close(views[4][:, :-1, :], chw[:, 1:, :])
