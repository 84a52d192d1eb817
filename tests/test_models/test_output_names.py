# Copyright (c) ffl_mm contributors.
"""The one owner of output names: formatting and parsing round trips, and
every user of them (model, metric, results) agrees."""
import pytest
import torch
from ffl_mm.registry import METRICS, MODELS

import ffl_mm  # noqa: F401
from conftest import REPO
from ffl_mm.utils import output_names as names
from helpers.lab import lab

output_label = lab('results').output_label
output_roles = lab('results').output_roles


def test_names_and_order():
    assert names.output_names(3, True) == [
        'branch0', 'branch1', 'branch2', 'ensemble', 'fused'
    ]
    assert names.output_names(2, False) == ['branch0', 'branch1', 'ensemble']
    assert [names.branch_index(n) for n in
            ('branch0', 'branch12', 'fused', 'branch', 'xbranch1', None)] == \
        [0, 12, None, None, None, None]
    shuffled = ['fused', 'branch10', 'ensemble', 'branch2', 'top1']
    assert sorted(shuffled, key=names.output_order) == [
        'branch2', 'branch10', 'ensemble', 'fused', 'top1'
    ]
    assert output_label('branch3', 'MFEF') == 'MFEF branch 3'
    assert output_label('fused') == 'FFL fused'


def test_okddip_leader_named_in_tables(tmp_path):
    """OKDDip's last branch is labelled its leader, from the config file
    or a work dir's config copy; other methods' outputs have no role."""
    import os.path as osp
    import shutil
    okddip = osp.join(REPO, 'configs/okddip/okddip_resnet32x4_digits.py')
    assert output_roles(okddip) == {'branch3': 'leader'}
    assert output_label('branch3', 'OKDDip', output_roles(okddip)) == \
        'OKDDip branch 3 (leader)'
    assert output_label('branch2', 'OKDDip', output_roles(okddip)) == \
        'OKDDip branch 2'
    assert output_roles(osp.join(
        REPO, 'configs/clilr/clilr_resnet32x3_digits.py')) == {}
    from mmengine.config import Config
    work = tmp_path / 'work'
    work.mkdir()
    Config.fromfile(okddip).dump(str(work / 'okddip.py'))
    assert output_roles(str(work)) == {'branch3': 'leader'}
    shutil.copy(work / 'okddip.py', work / 'other.py')
    assert output_roles(str(work)) == {}  # which copy is the run's: unknown


@pytest.mark.parametrize('name, k', [(None, 1), ('branch0', 5),
                                     ('branch11', 1), ('ensemble', 1),
                                     ('fused', 3)])
def test_metric_keys_round_trip(name, k):
    key = names.metric_key(name, k)
    assert key.startswith('accuracy/') and key.endswith(f'top{k}')
    assert names.parse_metric_key(key) == (name, k)
    assert names.parse_metric_key(names.metric_key(name, k, prefix=None)) \
        == (name, k)
    assert names.parse_metric_key('accuracy/branchX_top1') is None
    assert names.parse_metric_key('loss_kd_fused') is None


def test_model_and_metric_use_the_same_names():
    model = MODELS.build(
        dict(type='FFLClassifier', num_branches=2,
             backbone=dict(type='CIFARResNet', depth=8),
             head=dict(type='LinearClsHead', num_classes=4),
             fusion_neck=dict(type='FFLFusionNeck'),
             fusion_head=dict(type='LinearClsHead', num_classes=4))).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert sorted(model(x)) == sorted(model.output_names)
        samples = model.predict(x)
    for s in samples:
        s.set_gt_label(0)
    metric = METRICS.build(dict(type='MultiBranchAccuracy', topk=(1, )))
    metric.process(None, [s.to_dict() for s in samples])
    got = metric.evaluate(3)
    want = {names.metric_key(n) for n in model.output_names}
    assert set(got) == want | {names.metric_key(None)}


def test_output_top1_of_a_test_run():
    """The demo's table rows: top-1 of each named output once, in order
    (top-5 and the selected output's key left out)."""
    output_top1 = lab('results').output_top1
    metrics = {
        'accuracy/top1': 90.0, 'accuracy/top5': 99.0,
        'accuracy/fused_top1': 91.0, 'accuracy/fused_top5': 99.5,
        'accuracy/branch1_top1': 88.0, 'accuracy/branch1_top5': 98.0,
        'accuracy/branch0_top1': 87.0, 'accuracy/ensemble_top1': 89.0,
        'data_time': 0.1
    }
    assert list(output_top1(metrics).items()) == [
        ('branch0', 87.0), ('branch1', 88.0), ('ensemble', 89.0),
        ('fused', 91.0)
    ]
