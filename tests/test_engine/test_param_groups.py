# Copyright (c) ffl_mm contributors.
"""One optimizer group per distinct setting, and old per-parameter
optimizer states still loading."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from conftest import shipped_config
from ffl_mm.engine.optimizers import merge_param_groups, regroup_state_dict
from ffl_mm.registry import MODELS


def _params(n):
    return [nn.Parameter(torch.full((2, ), float(i))) for i in range(n)]


def test_merge_keeps_order_and_settings():
    p = _params(5)
    groups = [
        dict(params=[p[0]], lr=0.1, weight_decay=1e-4),
        dict(params=[p[1]], lr=0.1, weight_decay=1e-5),
        dict(params=[p[2], p[3]], lr=0.1, weight_decay=1e-4),
        dict(params=p[4], lr=0.1, weight_decay=1e-5),  # a bare tensor
    ]
    merged = merge_param_groups(groups)
    assert len(merged) == 2
    assert merged[0]['params'] == [p[0], p[2], p[3]]
    assert merged[0]['weight_decay'] == 1e-4 and merged[0]['lr'] == 0.1
    assert merged[1]['params'] == [p[1], p[4]]
    assert merged[1]['weight_decay'] == 1e-5
    # the input groups are left as they were
    assert groups[0]['params'] == [p[0]]
    # nothing to merge: same groups back
    assert len(merge_param_groups(groups[:2])) == 2


def _sgd(groups):
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)


def test_a_per_parameter_state_loads_into_merged_groups():
    """Momentum buffers keep their parameters, and the next step is the
    one the per-parameter optimizer would take."""
    torch.manual_seed(0)
    params = _params(6)
    decays = [1e-4, 1e-2, 1e-4, 1e-2, 1e-2, 1e-4]
    per_param = [dict(params=[q], weight_decay=d)
                 for q, d in zip(params, decays)]
    old = _sgd(per_param)
    for _ in range(2):
        for i, q in enumerate(params):
            q.grad = torch.randn(2) * (i + 1)
        old.step()
    saved = copy.deepcopy(old.state_dict())
    twins = [nn.Parameter(q.detach().clone()) for q in params]
    twin_layout = [[t] for t in twins]
    merged = _sgd(merge_param_groups(
        [dict(params=lay, weight_decay=d)
         for lay, d in zip(twin_layout, decays)]))
    assert len(merged.param_groups) == 2
    # without regrouping torch refuses the state (6 groups against 2)
    with pytest.raises(ValueError, match='number of parameter groups'):
        copy.deepcopy(merged).load_state_dict(saved)
    merged.load_state_dict(
        regroup_state_dict(saved, twin_layout, merged.param_groups))
    for q, t in zip(params, twins):
        assert torch.equal(old.state[q]['momentum_buffer'],
                           merged.state[t]['momentum_buffer'])
    grads = [torch.randn(2) for _ in params]
    for q, t, g in zip(params, twins, grads):
        q.grad, t.grad = g.clone(), g.clone()
    old.step()
    merged.step()
    for q, t in zip(params, twins):
        assert torch.equal(q, t)
    # a state of another layout is passed through untouched
    other = dict(saved, param_groups=saved['param_groups'][:3])
    assert regroup_state_dict(other, twin_layout,
                              merged.param_groups) is other


def test_ffl_optimizer_has_one_group_per_setting_and_resumes_old_state():
    cfg = shipped_config('configs/ffl/ffl_resnet32x2_digits.py')
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = wrapper.optimizer.param_groups
    # the network's weight decay, and a tenth of it for the fusion module
    assert [g['weight_decay'] for g in groups] == [1e-4, 1e-5]
    fusion = {id(p) for n, p in model.named_parameters()
              if n.startswith(('fusion_neck', 'fusion_head'))}
    assert {id(p) for p in groups[1]['params']} == fusion
    assert sum(len(g['params']) for g in groups) == len(
        list(model.parameters()))
    # an optimizer state saved with MMEngine's one group per parameter
    # (checkpoints written before the merge) resumes
    old_cfg = copy.deepcopy(cfg.optim_wrapper)
    old_cfg.pop('constructor')
    old = build_optim_wrapper(model, old_cfg)
    assert len(old.optimizer.param_groups) == len(list(model.parameters()))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    old.step()
    wrapper.load_state_dict(copy.deepcopy(old.state_dict()))
    for p in model.parameters():
        assert torch.equal(wrapper.optimizer.state[p]['momentum_buffer'],
                           old.optimizer.state[p]['momentum_buffer'])
    assert [g['weight_decay'] for g in wrapper.optimizer.param_groups] == \
        [1e-4, 1e-5]
