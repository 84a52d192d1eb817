# Copyright (c) ffl_mm contributors.
"""DMLClassifier: its step equals the public code's (OKDDip's DML, peers
detached; float64, 2 and 3 networks: tests/data/README.md), the paper's
one-by-one update, gradient accumulation and DDP refused with it, and the
arguments that do not go together."""
import copy
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from ffl_mm.registry import MODELS
from helpers.reference_steps import (check_reference_step,
                                     check_reference_steps, load_case)

CASES = {
    'dml_r8x2_c100': ('dml_reference_r8x2_c100_f64.pt',
                      'configs/dml/dml_resnet32x2_cifar100.py'),
    'dml_r8x3_c10': ('dml_reference_r8x3_c10_f64.pt',
                     'configs/dml/dml_resnet32x2_cifar100.py'),
}


#: Their module names -> ffl_mm's (first match wins).
DML_RENAMES = [
    (r'^stu(\d+)\.fc\.', r'heads.\1.fc.'),
    (r'^stu(\d+)\.', r'backbones.\1.'),
]

@pytest.fixture(scope='module', params=sorted(CASES))
def case(request):
    return load_case(request.param, CASES)


def test_one_step_equals_the_reference(case):
    check_reference_step(case, DML_RENAMES)


def test_three_sgd_steps_equal_the_reference(case):
    check_reference_steps(case, DML_RENAMES)


def make_batch(n, num_classes):
    """A data-loader batch: uint8 images and labels."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    return dict(inputs=list(images),
                data_samples=[DataSample().set_gt_label(i % num_classes)
                              for i in range(n)])


def _dml(num_branches=2, **kwargs):
    """DML (the networks updated together unless ``branch_update`` says
    otherwise)."""
    cfg = dict(
        type='DMLClassifier', num_branches=num_branches,
        backbone=dict(type='CIFARResNet', depth=8),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64),
        distill_loss=dict(type='PeerKDLoss', temperature=3.0),
        data_preprocessor=dict(num_classes=10))
    cfg.update(kwargs)
    return cfg


def _sgd(model):
    return build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.5, momentum=0.9,
                                   weight_decay=1e-3)))


@pytest.mark.parametrize('num_branches', [2, 3])
def test_one_by_one_updates_each_network_after_its_peers_moved(
        num_branches):
    """DML's algorithm: network i steps on its own terms, computed against
    the peers' current predictions (those updated earlier in the iteration
    already moved); written out by hand here, a full forward of every
    network before each update."""
    torch.manual_seed(0)
    model = MODELS.build(_dml(num_branches, branch_update='one_by_one'))
    model.train()
    hand = copy.deepcopy(model)
    data = make_batch(n=6, num_classes=10)
    log = model.train_step(copy.deepcopy(data), _sgd(model))

    wrapper = _sgd(hand)
    batch = hand.data_preprocessor(copy.deepcopy(data), True)
    terms = {}
    for i in range(num_branches):
        losses = hand(batch['inputs'], batch['data_samples'], mode='loss')
        mine = losses[f'loss_ce_branch{i}'] + losses[f'loss_kd_branch{i}']
        terms[i] = float(mine)
        wrapper.optimizer.zero_grad()
        mine.backward()
        # only network i has gradients: the peers are detached
        for j in range(num_branches):
            grads = [p.grad for p in hand.backbones[j].parameters()]
            assert all(g is None for g in grads) == (j != i)
        wrapper.optimizer.step()
    want = dict(hand.named_parameters())
    for name, got in model.named_parameters():
        torch.testing.assert_close(got, want[name], msg=name)
    assert float(log['loss']) == pytest.approx(sum(terms.values()),
                                               rel=1e-5)
    for i in range(num_branches):
        assert float(log[f'loss_ce_branch{i}']) + float(
            log[f'loss_kd_branch{i}']) == pytest.approx(terms[i], rel=1e-5)
        # N + N(N-1)/2 forwards: network j is forwarded again (no grad)
        # for each network after it
        assert int(model.backbones[i].bn1.num_batches_tracked) == \
            num_branches - i


def test_together_is_one_step_on_the_summed_loss():
    torch.manual_seed(0)
    model = MODELS.build(_dml(2)).train()
    hand = copy.deepcopy(model)
    data = make_batch(n=6, num_classes=10)
    model.train_step(copy.deepcopy(data), _sgd(model))
    wrapper = _sgd(hand)
    batch = hand.data_preprocessor(copy.deepcopy(data), True)
    loss, _ = hand.parse_losses(
        hand(batch['inputs'], batch['data_samples'], mode='loss'))
    wrapper.update_params(loss)
    for (name, got), want in zip(model.state_dict().items(),
                                 hand.state_dict().values()):
        torch.testing.assert_close(got, want, msg=name)


@pytest.mark.parametrize('change, match', [
    (dict(branch_update='alternate'), "branch_update='alternate'; choose"),
    (dict(branch_update='one_by_one', shared_stages=2),
     "'one_by_one' updates independent networks in turn"),
    (dict(distill_loss=dict(type='MutualKDLoss')),
     'MutualKDLoss teaches the branches from a teacher, and '
     r'DMLClassifier has none .*\(FFLClassifier, .*ONEClassifier.*\) or a loss between '
     r'the branches \(PeerKDLoss[,)]'),
])
def test_dml_arguments_that_do_not_go_together(change, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(_dml(**change))


def test_one_by_one_refuses_gradient_accumulation():
    """MMEngine counts every update_params call: with accumulative_counts=2
    and one update per network, the networks' gradients would mix and the
    steps fall at the wrong iterations. Refused before anything moves,
    naming both options; 'together' accumulates as MMEngine does."""
    model = MODELS.build(_dml(2, branch_update='one_by_one'))
    before = copy.deepcopy(model.state_dict())
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=0.5), accumulative_counts=2))
    with pytest.raises(ValueError, match=r"branch_update='one_by_one' .*"
                       r'accumulative_counts=2\). Set accumulative_counts=1 '
                       "or branch_update='together'"):
        model.train_step(make_batch(4, 10), wrapper)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    together = MODELS.build(_dml(2, branch_update='together'))
    wrapper = build_optim_wrapper(together, dict(
        optimizer=dict(type='SGD', lr=0.5), accumulative_counts=2))
    weight = together.heads[0].fc.weight
    start = weight.detach().clone()
    together.train_step(make_batch(4, 10), wrapper)  # accumulates
    torch.testing.assert_close(weight.detach(), start, rtol=0, atol=0)
    together.train_step(make_batch(4, 10), wrapper)  # steps
    assert not torch.equal(weight.detach(), start)


def test_one_by_one_refuses_the_ddp_path(monkeypatch):
    """MMEngine's DDP wrapper calls forward itself and would update the
    networks together without a word."""
    model = MODELS.build(_dml(2, branch_update='one_by_one')).train()
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    samples = [DataSample().set_gt_label(1) for _ in range(2)]
    with pytest.raises(RuntimeError, match="use branch_update='together' "
                       'for distributed training'):
        model(torch.randn(2, 3, 32, 32), samples, mode='loss')
