# Copyright (c) ffl_mm contributors.
"""Shared by the equivalence tests of every method: a reference training
step of public code (tests/data/*_reference_*.pt, float64) and our model
built from it with the same weights, compared tensor by tensor."""
import os.path as osp
import re

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from conftest import REPO
from ffl_mm.registry import MODELS

#: Where the reference steps are.
DATA = osp.join(REPO, 'tests', 'data')
#: Relative tolerance of float64 round-off.
TOL = 1e-9


def ours(name, renames):
    for pattern, repl in renames:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    raise KeyError(f'no mapping for {name}')


def assert_close(name, got, want, tol=TOL, absolute=False):
    got, want = got.detach().double(), want.detach().double()
    assert got.shape == want.shape, name
    scale = 1.0 if absolute else (want.abs().max().item() or 1.0)
    err = (got - want).abs().max().item()
    assert err <= tol * scale, f'{name}: max |diff| {err:.3g}, scale ' \
        f'{scale:.3g}'


def build_from_reference(ref, model_cfg, optim_cfg, renames):
    """The model of ``model_cfg`` in float64 with the reference's initial
    weights (their names mapped by ``renames``, one to one), the
    ``optim_cfg`` optimiser set to the reference's settings, and the
    reference batch's data samples."""
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        model = MODELS.build(model_cfg).double().train()
    state = {ours(k, renames): v for k, v in ref['authors_state'].items()}
    assert sorted(state) == sorted(model.state_dict())  # one to one
    model.load_state_dict(
        {k: v.double() if v.is_floating_point() else v
         for k, v in state.items()}, strict=True)
    settings = ref['optim_settings']
    optim_cfg.optimizer.update(
        lr=settings['lr'], momentum=settings['momentum'],
        nesterov=settings['nesterov'],
        weight_decay=settings['weight_decay'],
        dampening=settings['dampening'])
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
    samples = [DataSample().set_gt_label(int(y)) for y in ref['y']]
    MessageHub.get_instance('test_reference_equivalence')
    return model, optim_wrapper, samples


def build_their_method(ref, model_base, renames):
    """CL-ILR's or OKDDip's model base (``model_base``, depth and weights
    from the reference, KD weight at the recorded ramp step) with FFL's
    CIFAR schedule set to their optimiser: :func:`build_from_reference`."""
    model_cfg = Config.fromfile(osp.join(REPO, model_base)).model
    model_cfg.backbone.depth = ref['depth']
    assert model_cfg.num_branches == ref['branches']
    assert model_cfg.head.num_classes == ref['classes']
    assert model_cfg.distill_loss.temperature == ref['temperature']
    # their ramp-up weight at the step they recorded
    model_cfg.distill_loss.update(rampup=None, loss_weight=ref['kd_weight'])
    schedule = 'configs/_base_/schedules/cifar_bs128_300e_ffl.py'
    return build_from_reference(
        ref, model_cfg,
        Config.fromfile(osp.join(REPO, schedule)).optim_wrapper, renames)


def assert_grads_equal(ref, model, loss, optim_wrapper, renames, zero=()):
    """Backward of ``loss``: every parameter's gradient as in the
    reference (those in ``zero``, round-off there, absolutely)."""
    optim_wrapper.backward(loss)
    params = dict(model.named_parameters())
    grads = ref['step1']['grads']
    assert sorted(ours(k, renames) for k in grads) == sorted(params)
    for theirs, want in grads.items():
        assert_close(f'grad {theirs}', params[ours(theirs, renames)].grad,
                     want, absolute=theirs in zero)


def assert_steps_equal(ref, model, optim_wrapper, samples, renames):
    """The reference's optimiser steps on its batch: every parameter and
    buffer afterwards as in the reference."""
    for _ in range(ref['steps']):
        losses = model(ref['x'], samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)
    state = model.state_dict()
    assert len(ref['after_steps']) == len(state)
    for theirs, want in ref['after_steps'].items():
        assert_close(f'after steps {theirs}', state[ours(theirs, renames)],
                     want)


def _dml_one_model(case, renames):
    """DML's or ONE's model of ``case`` (``(name, reference, config)``),
    built from the reference's weights with the reference's depth,
    branches, classes and temperature, w = 1."""
    name, ref, config = case
    cfg = Config.fromfile(osp.join(REPO, config))
    model_cfg = cfg.model
    model_cfg.backbone.depth = ref['depth']
    model_cfg.num_branches = ref['nets'] if 'nets' in ref else \
        ref['branches']
    if ref['classes'] != model_cfg.head.num_classes:
        model_cfg.head.num_classes = ref['classes']
    model_cfg.distill_loss.temperature = ref['temperature']
    model_cfg.distill_loss.rampup = None  # the references use w = 1
    if name.startswith('dml'):
        # OKDDip updates the networks together from one summed loss
        model_cfg.branch_update = 'together'
    return (*build_from_reference(ref, model_cfg, cfg.optim_wrapper,
                                  renames), renames)


def head_outputs(model):
    """Forward hooks that keep each head's (and the gate's) output."""
    seen = {}
    for i, head in enumerate(model.heads):
        head.register_forward_hook(
            lambda m, i_, out, i=i: seen.__setitem__(f'branch{i}', out))
        head.register_forward_hook(
            lambda m, i_, out, i=i: seen.__setitem__(f'net{i}', out))
    if getattr(model, 'ensemble_head', None) is not None:
        model.ensemble_head.register_forward_hook(
            lambda m, i_, out: seen.__setitem__('ensemble', out))
        model.ensemble_head.register_forward_pre_hook(
            lambda m, args: seen.__setitem__('gate_input', args[0]))
        model.ensemble_head.bn.register_forward_hook(
            lambda m, i_, out: seen.__setitem__('gate_bn_out', out))
    return seen


def check_reference_step(case, renames):
    """Every loss term, the logits (and ONE's gate), the total and every
    gradient of one step equal the reference's."""
    name, ref, _ = case
    model, optim_wrapper, samples, renames = _dml_one_model(case, renames)
    seen = head_outputs(model)
    losses = model(ref['x'], samples, mode='loss')
    step1 = ref['step1']
    for term, want in step1['terms'].items():
        key = 'loss_' + re.sub(r'net(\d)', lambda m: f'branch{m[1]}', term)
        assert losses[key].dtype == torch.float64, key
        assert_close(term, losses[key], want)
    assert sorted(k for k in losses if k.startswith('loss')) == sorted(
        'loss_' + re.sub(r'net(\d)', lambda m: f'branch{m[1]}', t)
        for t in step1['terms'])
    loss, _ = model.parse_losses(losses)
    assert_close('total', loss, step1['loss'])
    for out, want in step1['logits'].items():
        assert_close(f'logits {out}', seen[out], want)
    if 'gate' in step1:
        with torch.no_grad():  # the same batch: the same batch statistics
            gate = model.ensemble_head.gate(seen['gate_input'])
        assert_close('gate', gate, step1['gate'])
        assert_close('gate_bn_out', seen['gate_bn_out'], step1['gate_bn_out'])
    assert_grads_equal(ref, model, loss, optim_wrapper, renames,
                       set(ref.get('grads_zero_up_to_roundoff') or []))


def check_reference_steps(case, renames):
    """Every parameter and buffer after three SGD steps equals the
    reference's."""
    assert_steps_equal(case[1], *_dml_one_model(case, renames))


def load_case(name, cases):
    """``(name, reference, config)`` of ``cases[name]`` (a reference file
    of tests/data and the config it is checked with)."""
    import torch
    file, config = cases[name]
    return name, torch.load(osp.join(DATA, file), weights_only=True), config
