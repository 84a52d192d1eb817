# Copyright (c) ffl_mm contributors.
import math

import pytest
import torch
from mmengine.logging import MessageHub
from ffl_mm.registry import MODELS

import ffl_mm  # noqa: F401
from ffl_mm.models.losses import (KDLoss, MutualKDLoss, PeerKDLoss,
                                  TeacherKDLoss, kd_kl_div, sigmoid_rampup)


def _softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_kd(student, teacher, T):
    """T² · mean over rows of Σ_c p_t log(p_t / p_s), written out."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s = _softmax([v / T for v in s_row])
        p_t = _softmax([v / T for v in t_row])
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return T * T * total / len(student)


STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]


def test_kd_value_matches_hand_computation():
    s = torch.tensor(STUDENT)
    t = torch.tensor(TEACHER)
    for T in (1.0, 3.0):
        expected = _hand_kd(STUDENT, TEACHER, T)
        assert kd_kl_div(s, t, T).item() == pytest.approx(expected, rel=1e-5)
    # first row alone at T=1: worked by hand
    # p_s = softmax(1, 2, .5) = (.2312, .6285, .1402)
    # p_t = softmax(2, 0, 1)  = (.6652, .0900, .2447)
    # KL = .6652 ln(.6652/.2312) + .0900 ln(.0900/.6285)
    #      + .2447 ln(.2447/.1402) = .7031 - .1749 + .1363 = .6645
    value = kd_kl_div(s[:1], t[:1], 1.0).item()
    assert value == pytest.approx(0.6645, abs=2e-3)
    assert kd_kl_div(s, s.clone(), 3.0).item() == pytest.approx(0, abs=1e-6)


def test_kd_gradient_and_detached_teacher():
    T = 3.0
    s = torch.tensor(STUDENT, requires_grad=True)
    t = torch.tensor(TEACHER, requires_grad=True)
    loss = KDLoss(temperature=T, loss_weight=2.0)(s, t)
    assert loss.item() == pytest.approx(2.0 * _hand_kd(STUDENT, TEACHER, T),
                                        rel=1e-5)
    loss.backward()
    # d/ds [w T² KL(p_t || p_s)] = w T (p_s - p_t) / B
    with torch.no_grad():
        p_s = torch.softmax(s / T, dim=1)
        p_t = torch.softmax(t / T, dim=1)
        expected = 2.0 * T * (p_s - p_t) / s.size(0)
    torch.testing.assert_close(s.grad, expected)
    assert t.grad is None


def test_kd_errors():
    with pytest.raises(ValueError, match='temperature must be > 0'):
        KDLoss(temperature=0)
    with pytest.raises(ValueError, match='one shape'):
        kd_kl_div(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize('epoch, expected', [
    (0, math.exp(-5)),
    (40, math.exp(-1.25)),
    (80, 1.0),
    (200, 1.0),
])
def test_sigmoid_rampup(epoch, expected):
    assert sigmoid_rampup(epoch, 80) == pytest.approx(expected, rel=1e-12)


def test_rampup_off_and_bad_length():
    assert sigmoid_rampup(0, 0) == 1.0
    assert sigmoid_rampup(3, None) == 1.0
    with pytest.raises(ValueError):
        sigmoid_rampup(1, -5)


def test_mutual_kd_terms():
    z0 = torch.tensor(STUDENT, requires_grad=True)
    z1 = torch.tensor(TEACHER, requires_grad=True)
    zf = torch.tensor([[0.5, 0.5, 0.0], [2.0, 0.0, -1.0]],
                      requires_grad=True)
    loss = MODELS.build(dict(type='MutualKDLoss', temperature=3.0,
                             rampup=80))
    out = loss([z0, z1], zf, progress=40)
    w = math.exp(-1.25)
    ens = ((torch.tensor(STUDENT) + torch.tensor(TEACHER)) / 2).tolist()
    assert set(out) == {
        'loss_kd_branch0', 'loss_kd_branch1', 'loss_kd_fused', 'kd_weight'
    }
    assert out['loss_kd_branch0'].item() == pytest.approx(
        w * _hand_kd(STUDENT, zf.tolist(), 3.0), rel=1e-5)
    assert out['loss_kd_branch1'].item() == pytest.approx(
        w * _hand_kd(TEACHER, zf.tolist(), 3.0), rel=1e-5)
    assert out['loss_kd_fused'].item() == pytest.approx(
        w * _hand_kd(zf.tolist(), ens, 3.0), rel=1e-5)
    assert out['kd_weight'].item() == pytest.approx(w)
    # branch terms train only the branches, the fused term only the fused
    out['loss_kd_fused'].backward(retain_graph=True)
    assert z0.grad is None and zf.grad is not None
    zf.grad = None
    out['loss_kd_branch0'].backward()
    assert z0.grad is not None and zf.grad is None


def test_mutual_kd_weight_follows_message_hub():
    loss = MutualKDLoss(rampup=80)
    hub = MessageHub.get_current_instance()
    old = hub.get_info('epoch')
    try:
        hub.update_info('epoch', 40)
        assert loss.current_weight() == pytest.approx(math.exp(-1.25))
        hub.update_info('epoch', 100)
        assert loss.current_weight() == 1.0
        by_iter = MutualKDLoss(rampup=1000, by_epoch=False)
        hub.update_info('iter', 500)
        assert by_iter.current_weight() == pytest.approx(math.exp(-1.25))
    finally:
        hub.update_info('epoch', old)
    assert MutualKDLoss(rampup=0).current_weight(0) == 1.0
    with pytest.raises(ValueError, match='rampup must be >= 0'):
        MutualKDLoss(rampup=-1)


@pytest.mark.parametrize('dtype, expected', [
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.float32),
    (torch.float32, torch.float32),
    (torch.float64, torch.float64),
])
def test_kd_computes_in_at_least_float32(dtype, expected):
    torch.manual_seed(0)
    s, t = torch.randn(4, 10, dtype=torch.float64), torch.randn(
        4, 10, dtype=torch.float64)
    exact = kd_kl_div(s, t, 3.0)
    got = kd_kl_div(s.to(dtype), t.to(dtype), 3.0)
    assert got.dtype == expected
    if dtype == torch.float64:
        # float64 stays float64: the hand formula to round-off
        p_t = torch.softmax(t / 3, 1)
        hand = 9 * (p_t * (p_t.log() - torch.log_softmax(s / 3, 1))).sum(
            1).mean()
        assert (got - hand).abs() < 1e-13
    else:
        assert got.double().item() == pytest.approx(exact.item(), rel=2e-2)


@pytest.mark.parametrize('loss', ['KDLoss', 'MutualKDLoss', 'PeerKDLoss'])
@pytest.mark.parametrize('kwargs, error, match', [
    (dict(loss_weight=-1.0), ValueError, r'loss_weight must be >= 0, got -1'),
    (dict(temperature=float('nan')), ValueError,
     'temperature must be finite, got nan'),
    (dict(temperature='3'), TypeError,
     r"temperature must be a number, got '3' \(str\)"),
    (dict(temperature=0), ValueError, r'temperature must be > 0, got 0'),
    (dict(loss_weight=True), TypeError, 'loss_weight must be a number'),
])
def test_bad_kd_settings_name_the_value(loss, kwargs, error, match):
    """Negative weights would push the models apart and a NaN temperature
    would poison every step, silently; a string was a raw TypeError."""
    with pytest.raises(error, match=rf'{loss}: {match}'):
        MODELS.build(dict(type=loss, **kwargs))


# three "networks" of two samples, three classes
PEERS = [STUDENT, TEACHER, [[0.0, 0.5, 0.5], [2.0, -1.0, 0.0]]]


@pytest.mark.parametrize('n', [2, 3, 4])
@pytest.mark.parametrize('T', [1.0, 3.0])
def test_peer_kd_is_the_mean_over_peers_of_each_kl(n, T):
    """DML: loss_kd_branch{i} = 1/(N-1) Σ_{j≠i} T² KL(p_j ‖ p_i)."""
    rows = (PEERS * 2)[:n]
    if n == 4:
        rows[3] = [[-1.0, 0.0, 1.0], [0.5, 0.5, -0.5]]
    logits = [torch.tensor(r) for r in rows]
    losses = PeerKDLoss(temperature=T, loss_weight=0.5)(logits)
    assert set(losses) == {f'loss_kd_branch{i}' for i in range(n)} | \
        {'kd_weight'}
    for i in range(n):
        want = 0.5 * sum(_hand_kd(rows[i], rows[j], T)
                         for j in range(n) if j != i) / (n - 1)
        assert losses[f'loss_kd_branch{i}'].item() == pytest.approx(
            want, rel=1e-5)
    assert losses['kd_weight'].item() == 0.5  # w · λ


def test_peer_kd_from_the_mean_of_the_peers_logits():
    """OKDDip's default mode: one KL from softmax(mean_{j≠i} z_j / T);
    the same as the paper's for two networks, not for three."""
    logits = [torch.tensor(r) for r in PEERS]
    losses = PeerKDLoss(temperature=3.0, peer_target='mean_logits')(logits)
    mean12 = [[(a + b) / 2 for a, b in zip(r1, r2)]
              for r1, r2 in zip(PEERS[1], PEERS[2])]
    assert losses['loss_kd_branch0'].item() == pytest.approx(
        _hand_kd(PEERS[0], mean12, 3.0), rel=1e-5)
    each = PeerKDLoss(temperature=3.0)(logits)['loss_kd_branch0']
    assert abs(each.item() - losses['loss_kd_branch0'].item()) > 1e-3
    two = [torch.tensor(r) for r in PEERS[:2]]
    assert PeerKDLoss(peer_target='mean_logits')(two)['loss_kd_branch1'] \
        .item() == pytest.approx(
            PeerKDLoss()(two)['loss_kd_branch1'].item(), rel=1e-6)
    with pytest.raises(ValueError, match="peer_target='best'"):
        PeerKDLoss(peer_target='best')
    with pytest.raises(ValueError, match='at least 2 branches, got 1'):
        PeerKDLoss()(two[:1])


def test_peers_are_fixed_targets():
    """Each branch's term gives a gradient to that branch only."""
    logits = [torch.tensor(r, requires_grad=True) for r in PEERS]
    losses = PeerKDLoss(temperature=3.0)(logits)
    losses['loss_kd_branch1'].backward()
    assert logits[0].grad is None and logits[2].grad is None
    assert logits[1].grad.abs().sum() > 0


def test_peers_keep_their_graph_when_asked():
    """``detach_peers=False`` (CL-ILR's and OKDDip's code): the same value,
    and the gradient of branch 1's term reaches the peers that make its
    target, as d/dz_j of T² KL(softmax(mean z/T) ‖ softmax(z_1/T))
    computed by hand: T (p_mean - p_1) · d mean/d z_j, here 1/2."""
    T = 3.0
    logits = [torch.tensor(r, dtype=torch.float64, requires_grad=True)
              for r in PEERS]  # (2, 3) each
    rows = 2  # the KL is averaged over the batch
    fixed = PeerKDLoss(T, peer_target='mean_logits')(logits)
    kept = PeerKDLoss(T, peer_target='mean_logits', detach_peers=False)(
        logits)
    assert kept['loss_kd_branch1'].item() == pytest.approx(
        fixed['loss_kd_branch1'].item(), rel=1e-12)
    kept['loss_kd_branch1'].backward()
    mean = (logits[0] + logits[2]).detach() / 2
    p_mean = torch.softmax(mean / T, dim=1)
    p_1 = torch.softmax(logits[1].detach() / T, dim=1)
    # d/dt_k of T² KL(softmax(t/T) ‖ softmax(s/T)) per row:
    # T p_t,k (l_k - Σ_c p_t,c l_c) with l = log p_t - log p_s
    log_ratio = torch.log(p_mean) - torch.log(p_1)
    d_t = T * p_mean * (log_ratio - (p_mean * log_ratio).sum(
        dim=1, keepdim=True))
    for j in (0, 2):
        torch.testing.assert_close(logits[j].grad, d_t / 2 / rows,
                                   rtol=1e-10, atol=1e-12)
    # the student's own gradient: T (p_1 - p_mean) per row
    torch.testing.assert_close(logits[1].grad, T * (p_1 - p_mean) / rows,
                               rtol=1e-10, atol=1e-12)


def test_peer_kd_defaults_are_the_papers_and_ramp_is_an_option():
    loss = PeerKDLoss()
    assert (loss.temperature, loss.rampup, loss.peer_target,
            loss.detach_peers) == (1.0, None, 'each', True)
    assert not PeerKDLoss.needs_teacher and MutualKDLoss.needs_teacher
    ramped = PeerKDLoss(rampup=80)
    logits = [torch.tensor(r) for r in PEERS[:2]]
    out = ramped(logits, progress=0)
    assert out['kd_weight'].item() == pytest.approx(math.exp(-5))
    assert out['loss_kd_branch0'].item() == pytest.approx(
        math.exp(-5) * _hand_kd(PEERS[0], PEERS[1], 1.0), rel=1e-5)


def test_teacher_kd_is_each_branch_from_the_teacher():
    """ONE and KDCL: each branch learns from the teacher, which learns
    nothing from the branches; MutualKDLoss without its fused term is an
    error naming TeacherKDLoss."""
    branches = [torch.tensor(r) for r in PEERS[:2]]
    teacher = torch.tensor(PEERS[2])
    losses = TeacherKDLoss(rampup=None)(branches, teacher)
    assert set(losses) == {'loss_kd_branch0', 'loss_kd_branch1',
                           'kd_weight'}
    for i in range(2):
        assert losses[f'loss_kd_branch{i}'].item() == pytest.approx(
            _hand_kd(PEERS[i], PEERS[2], 3.0), rel=1e-5)
    with pytest.raises(ValueError, match="distill_fused=False; the branches' "
                       "terms without the fused one are type='TeacherKDLoss'"):
        MutualKDLoss(distill_fused=False)
