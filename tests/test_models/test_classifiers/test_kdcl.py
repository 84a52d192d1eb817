# Copyright (c) ffl_mm contributors.
"""KDCLClassifier (Guo et al., CVPR 2020): every loss term against the
paper's equations written out here in float64, each student on its own
view, the teacher detached and untrained, the teachers' functions, the
multi-view preprocessor and the arguments that do not go together."""
import copy
import math

import pytest
import torch
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.structures import DataSample

from ffl_mm.models.data_preprocessors import MultiViewClsDataPreprocessor
from ffl_mm.models.utils.ensemble_teachers import (min_logit_teacher,
                                                   naive_teacher)
from ffl_mm.registry import MODELS

T = 2.5
WEIGHT = 0.7


def _kdcl(num_branches=3, **kwargs):
    cfg = dict(
        type='KDCLClassifier', num_branches=num_branches,
        backbone=dict(type='CIFARResNet', depth=8),
        head=dict(type='LinearClsHead', num_classes=5),
        distill_loss=dict(type='TeacherKDLoss', temperature=T,
                          loss_weight=WEIGHT, rampup=None),
        data_preprocessor=dict(type='MultiViewClsDataPreprocessor',
                               num_classes=5))
    cfg.update(kwargs)
    return cfg


def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def test_min_logit_and_naive_teachers_by_hand():
    z = [torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]]),
         torch.tensor([[1.0, 1.5, -2.0], [4.0, 1.0, 0.0]])]
    y = torch.tensor([0, 1])
    # t_c = min_i (z_ic - z_iy)
    expected = [[min(2.0 - 2.0, 1.0 - 1.0), min(-1.0 - 2.0, 1.5 - 1.0),
                 min(0.5 - 2.0, -2.0 - 1.0)],
                [min(0.0 - 3.0, 4.0 - 1.0), 0.0, min(1.0 - 3.0, 0.0 - 1.0)]]
    assert min_logit_teacher(z, y).tolist() == expected
    # image 0: CE of student 0 is lower (its true logit leads by more);
    # image 1: student 0 (3 vs 4) beats student 1 (1 vs 4)
    assert naive_teacher(z, y).tolist() == [[2.0, -1.0, 0.5],
                                            [0.0, 3.0, 1.0]]
    y = torch.tensor([1, 0])
    assert naive_teacher(z, y).tolist() == [[1.0, 1.5, -2.0],
                                            [4.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match='one class index per image'):
        min_logit_teacher(z, torch.tensor([[0, 1]]))


@pytest.mark.parametrize('teacher', ['min_logit', 'naive'])
def test_every_term_is_the_papers_equation_in_float64(teacher):
    torch.manual_seed(0)
    model = MODELS.build(_kdcl(teacher=teacher)).double()
    model.init_weights()
    model.train()
    views = torch.randn(4, 3, 3, 32, 32, dtype=torch.float64)
    labels = [3, 0, 4, 1]
    samples = [DataSample().set_gt_label(c) for c in labels]
    losses = model(views, samples, mode='loss')
    assert set(losses) == {*(f'loss_ce_branch{i}' for i in range(3)),
                           *(f'loss_kd_branch{i}' for i in range(3)),
                           'kd_weight'}
    with torch.no_grad():  # student i on view i, as plain networks
        z = [model.heads[i](model.necks[i](model.backbones[i](views[:, i])))
             .tolist() for i in range(3)]
    for i in range(3):
        ce = sum(-math.log(_softmax(z[i][b])[labels[b]])
                 for b in range(4)) / 4
        assert float(losses[f'loss_ce_branch{i}']) == pytest.approx(
            ce, rel=1e-12)
    kd = [0.0] * 3
    for b in range(4):
        y = labels[b]
        if teacher == 'min_logit':
            t = [min(z[i][b][c] - z[i][b][y] for i in range(3))
                 for c in range(5)]
        else:
            ce_b = [-math.log(_softmax(z[i][b])[y]) for i in range(3)]
            t = z[ce_b.index(min(ce_b))][b]
        p_t = _softmax([v / T for v in t])
        for i in range(3):
            p_i = _softmax([v / T for v in z[i][b]])
            kd[i] += sum(p * math.log(p / q) for p, q in zip(p_t, p_i)) / 4
    for i in range(3):
        assert float(losses[f'loss_kd_branch{i}']) == pytest.approx(
            WEIGHT * T * T * kd[i], rel=1e-10)


def test_the_teacher_is_detached_and_has_no_loss_of_its_own():
    torch.manual_seed(0)
    model = MODELS.build(_kdcl(num_branches=2)).double()
    model.train()
    views = torch.randn(2, 2, 3, 32, 32, dtype=torch.float64)
    samples = [DataSample().set_gt_label(c) for c in (1, 2)]
    losses = model(views, samples, mode='loss')
    assert not any('teacher' in key for key in losses)
    losses['loss_kd_branch0'].backward()
    # student 1 makes the teacher, yet gets no gradient from student 0's KD
    assert all(p.grad is None or not p.grad.any()
               for p in model.backbones[1].parameters())
    assert any(p.grad is not None and p.grad.any()
               for p in model.backbones[0].parameters())


def test_each_student_sees_its_own_view_and_testing_one_image():
    torch.manual_seed(0)
    model = MODELS.build(_kdcl(num_branches=2)).eval()
    images = torch.randn(2, 3, 32, 32)
    other = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        on_one = model(images)
        on_views = model(torch.stack([images, other], dim=1))
        swapped = model(torch.stack([other, images], dim=1))
    torch.testing.assert_close(on_views['branch0'], on_one['branch0'])
    torch.testing.assert_close(swapped['branch1'], on_one['branch1'])
    assert not torch.allclose(on_views['branch1'], on_one['branch1'])
    with pytest.raises(ValueError, match='3 views of each image for 2 '
                       'students; set .* MultiView num_views=2'):
        model(torch.randn(2, 3, 3, 32, 32))


@pytest.mark.parametrize('change, match', [
    (dict(teacher='mean'), r"teacher='mean'; choose one of \['min_logit', "
     r"'naive'\]"),
    (dict(shared_stages=1), 'shared_stages=1; .* Set shared_stages=0'),
    (dict(train_cfg=dict(augments=dict(type='Mixup', alpha=0.2))),
     'train_cfg.augments mixes labels'),
])
def test_kdcl_arguments_that_do_not_go_together(change, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(_kdcl(**change))


def _loader_batch(collate):
    """Two views of 3 uint8 images as MMEngine's collate functions give
    them: ``default_collate`` (a tensor per view) or ``pseudo_collate``."""
    torch.manual_seed(0)
    views = torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i) for i in range(3)]
    inputs = list(views) if collate == 'default' else \
        [tuple(view) for view in views]
    return views, dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('collate', ['default', 'pseudo'])
def test_multi_view_preprocessor_normalises_each_view_as_mmpretrain(collate):
    args = dict(mean=[10., 20., 30.], std=[2., 4., 8.], to_rgb=True)
    views, data = _loader_batch(collate)
    out = MultiViewClsDataPreprocessor(**args)(copy.copy(data), True)
    plain = ClsDataPreprocessor(**args)
    assert out['inputs'].shape == (3, 2, 3, 8, 8)
    for v in range(2):
        expected = plain(dict(inputs=views[v], data_samples=None))['inputs']
        torch.testing.assert_close(out['inputs'][:, v], expected)
    assert [int(s.gt_label) for s in out['data_samples']] == [0, 1, 2]
    # one view per image: exactly MMPretrain's preprocessor
    single = dict(inputs=views[0], data_samples=None)
    torch.testing.assert_close(
        MultiViewClsDataPreprocessor(**args)(dict(single))['inputs'],
        plain(dict(single))['inputs'])


def test_multi_view_preprocessor_refuses_batch_augments():
    with pytest.raises(ValueError, match='would mix every view'):
        MultiViewClsDataPreprocessor(
            num_classes=5, batch_augments=dict(
                augments=dict(type='Mixup', alpha=0.2)))
