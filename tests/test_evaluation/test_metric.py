# Copyright (c) ffl_mm contributors.
import pytest
import torch
from ffl_mm.registry import METRICS
from mmpretrain.structures import DataSample

import ffl_mm  # noqa: F401


def _sample(label, branch_scores, fused, selected):
    sample = DataSample().set_gt_label(label)
    sample.set_pred_score(torch.tensor(selected))
    sample.set_field(torch.tensor(branch_scores), 'branch_scores')
    ens = torch.tensor(branch_scores).mean(0)
    sample.set_field(ens, 'ensemble_score')
    sample.set_field(torch.tensor(fused), 'fused_score')
    return sample.to_dict()


def test_every_output_in_one_evaluation():
    # 3 classes; 4 samples. Branch 0 right on samples 0, 1; branch 1 right
    # on 0, 1, 2; fused right on all four; ensemble (mean) right on 0, 1, 2.
    samples = [
        _sample(0, [[.8, .1, .1], [.7, .2, .1]], [.9, .05, .05],
                [.9, .05, .05]),
        _sample(1, [[.1, .8, .1], [.2, .7, .1]], [.1, .8, .1], [.1, .8, .1]),
        _sample(2, [[.5, .1, .4], [.1, .1, .8]], [.1, .2, .7], [.1, .2, .7]),
        _sample(2, [[.1, .6, .3], [.6, .1, .3]], [.2, .3, .5], [.2, .3, .5]),
    ]
    metric = METRICS.build(dict(type='MultiBranchAccuracy', topk=(1, 2, 5)))
    metric.process(None, samples)
    results = metric.evaluate(4)
    assert results['accuracy/top1'] == pytest.approx(100.0)
    assert results['accuracy/fused_top1'] == pytest.approx(100.0)
    assert results['accuracy/branch0_top1'] == pytest.approx(50.0)
    assert results['accuracy/branch1_top1'] == pytest.approx(75.0)
    # ensemble: sample 2 (.3, .1, .6) right; sample 3 (.35, .35, .3) has
    # its label third, so it is wrong at top-1 and at top-2
    assert results['accuracy/ensemble_top1'] == pytest.approx(75.0)
    assert results['accuracy/branch0_top2'] == pytest.approx(100.0)
    assert results['accuracy/ensemble_top2'] == pytest.approx(75.0)
    # top-5 > 3 classes is skipped
    assert not any(key.endswith('top5') for key in results)


def test_plain_classifier_samples():
    sample = DataSample().set_gt_label(1).set_pred_score(
        torch.tensor([.2, .8])).to_dict()
    metric = METRICS.build(dict(type='MultiBranchAccuracy'))
    metric.process(None, [sample])
    assert metric.evaluate(1) == {'accuracy/top1': 100.0}


def test_bad_topk():
    with pytest.raises(ValueError, match='topk'):
        METRICS.build(dict(type='MultiBranchAccuracy', topk=(0, )))
