# Copyright (c) ffl_mm contributors.
"""ONEClassifier: its step equals the ONE authors' code (float64, 2 and 3
branches: tests/data/README.md), the gate learning from the ensemble's
cross-entropy only, and the arguments that do not go together."""
import pytest
import torch
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from helpers.reference_steps import (check_reference_step,
                                     check_reference_steps, load_case)

CASES = {
    'one_r8x2_c100': ('one_reference_r8x2_c100_f64.pt',
                      'configs/one/one_resnet32x2_cifar100.py'),
    'one_r8x3_c100': ('one_reference_r8x3_c100_f64.pt',
                      'configs/one/one_resnet32x3_cifar100.py'),
}


#: Their module names -> ffl_mm's (first match wins).
ONE_RENAMES = [
    (r'^(conv1|bn1|layer1|layer2)\.', r'backbones.0.\1.'),
    (r'^layer3_(\d)\.', lambda m: f'backbones.{int(m[1]) - 1}.layer3.'),
    (r'^classfier3_(\d)\.', lambda m: f'heads.{int(m[1]) - 1}.fc.'),
    (r'^control_v1\.', 'ensemble_head.fc.'),
    (r'^bn_v1\.', 'ensemble_head.bn.'),
]


@pytest.fixture(scope='module', params=sorted(CASES))
def case(request):
    return load_case(request.param, CASES)


def test_one_step_equals_the_reference(case):
    check_reference_step(case, ONE_RENAMES)


def test_three_sgd_steps_equal_the_reference(case):
    check_reference_steps(case, ONE_RENAMES)


def _one(num_branches=2, **kwargs):
    cfg = dict(
        type='ONEClassifier', num_branches=num_branches,
        shared_stages=2, backbone=dict(type='CIFARResNet', depth=8),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64),
        ensemble_head=dict(type='GatedEnsembleHead'),
        distill_loss=dict(type='TeacherKDLoss', rampup=None),
        data_preprocessor=dict(num_classes=10))
    cfg.update(kwargs)
    return cfg


@pytest.mark.parametrize('num_branches', [2, 3, 4])
def test_one_gate_learns_from_the_ensemble_cross_entropy_only(num_branches):
    torch.manual_seed(0)
    model = MODELS.build(_one(num_branches)).train()
    assert model.ensemble_head.in_channels == 32  # stage-2 output
    x = torch.randn(6, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 10) for i in range(6)]
    losses = model(x, samples, mode='loss')
    assert set(losses) == {
        *(f'loss_ce_branch{i}' for i in range(num_branches)),
        *(f'loss_kd_branch{i}' for i in range(num_branches)),
        'loss_ce_ensemble', 'kd_weight'}
    # the KD terms: the ensemble is a fixed teacher, the gate gets nothing
    sum(losses[f'loss_kd_branch{i}']
        for i in range(num_branches)).backward(retain_graph=True)
    assert model.ensemble_head.fc.weight.grad is None
    losses['loss_ce_ensemble'].backward()
    assert model.ensemble_head.fc.weight.grad.abs().sum() > 0
    # the ensemble's cross-entropy also reaches the branches and the trunk
    assert model.backbones[0].layer1[0].conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model(x, samples, mode='predict')
        logits = model(x, mode='tensor')
    torch.testing.assert_close(preds[0].pred_score,
                               logits['ensemble'][0].softmax(0))


@pytest.mark.parametrize('change, error, match', [
    (dict(fusion_neck=dict(type='FFLFusionNeck'),
          fusion_head=dict(type='LinearClsHead', num_classes=10)),
     TypeError, "fusion_neck belongs to FFLClassifier; use "
     "type='FFLClassifier'"),
    (dict(shared_stages=0), ValueError,
     "gate_input='trunk' reads the shared stages"),
    (dict(ensemble_head=dict(type='GatedEnsembleHead', num_branches=3)),
     ValueError, 'ensemble_head num_branches=3 but the model has 2 branches'),
    (dict(branch_update='one_by_one'), TypeError,
     'branch_update belongs to DMLClassifier'),
])
def test_one_arguments_that_do_not_go_together(change, error, match):
    with pytest.raises(error, match=match):
        MODELS.build(_one(**change))
