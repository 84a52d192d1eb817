# Copyright (c) ffl_mm contributors.
"""ffl_mm's OKDDip step equals the public code's (float64 round-off).

``tests/data/okddip_reference_r8x4_c100_f64.pt`` holds one training step
of OKDDip from its authors' code (ResNet-8, 3 peers and a group leader,
100 classes, float64; see ``tests/data/README.md``): a shared stem and
stages 1-2, four stage-3 branches (the last the leader), an attention over
the peers from two projections of their pooled features shared by the
peers (query and key, 64 -> 8, no bias), each peer distilled from its own
attention-weighted mix of the peers' logits and the leader from their
mean, the targets keeping their graph. Its weights are mapped one to one
into the model of ``configs/_base_/models/okddip_cifar-resnet32x4.py``
(depth 8, their KD weight) trained with FFL's CIFAR schedule set to their
optimiser; every term, the total, every logit and target, the attention,
every gradient, and every parameter and buffer after three SGD steps
agree to 1e-9 of the tensor's largest value.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from conftest import REPO
from ffl_mm.registry import MODELS
from helpers.reference_steps import (DATA, assert_close, assert_grads_equal,
                                    assert_steps_equal, build_their_method)

MODEL = 'configs/_base_/models/okddip_cifar-resnet32x4.py'
LEADER = 3

#: Their module names -> ffl_mm's (first match wins).
RENAMES = [
    (r'^(conv1|bn1|layer1|layer2)\.', r'backbones.0.\1.'),
    (r'^layer3_(\d)\.', r'backbones.\1.layer3.'),
    (r'^classifier3_(\d)\.', r'heads.\1.fc.'),
    (r'^query_weight\.', 'peer_attention.query.'),
    (r'^key_weight\.', 'peer_attention.key.'),
]
#: Their loss terms -> ffl_mm's loss keys (the leader is the last branch).
TERMS = {
    **{f'{kind}_peer{i}': f'loss_{kind}_branch{i}'
       for kind in ('ce', 'kd') for i in range(3)},
    'ce_leader': f'loss_ce_branch{LEADER}',
    'kd_leader': f'loss_kd_branch{LEADER}',
}


@pytest.fixture(scope='module')
def ref():
    return torch.load(osp.join(DATA, 'okddip_reference_r8x4_c100_f64.pt'),
                      weights_only=True)


def _build(ref):
    assert ref['branches'] == 4  # 3 peers and the leader
    return build_their_method(ref, MODEL, RENAMES)


def test_one_step_equals_the_reference(ref):
    model, optim_wrapper, samples = _build(ref)
    seen = {}
    for i, head in enumerate(model.heads):
        head.register_forward_hook(
            lambda m, args, out, i=i: seen.__setitem__(i, out))
    model.peer_attention.register_forward_hook(
        lambda m, args, out: seen.__setitem__('attention', out))
    losses = model(ref['x'], samples, mode='loss')
    step1 = ref['step1']
    assert sorted(k for k in losses if k.startswith('loss')) == sorted(
        TERMS.values())
    for term, want in step1['terms'].items():
        assert losses[TERMS[term]].dtype == torch.float64, term
        assert_close(term, losses[TERMS[term]], want)
    loss, _ = model.parse_losses(losses)
    assert_close('total', loss, step1['loss'])
    for i in range(3):
        assert_close(f'logits peer{i}', seen[i], step1['logits'][f'peer{i}'])
    assert_close('logits leader', seen[LEADER], step1['logits']['leader'])
    targets, attention = seen['attention']
    assert_close('attention', attention, ref['attention_step1'])
    for i in range(3):
        assert_close(f'target peer{i}', targets[i],
                     step1['logits'][f'target_peer{i}'])
    assert_grads_equal(ref, model, loss, optim_wrapper, RENAMES)


def test_three_sgd_steps_equal_the_reference(ref):
    assert_steps_equal(ref, *_build(ref), RENAMES)


def test_peer_attention_by_hand():
    """Two peers, 2-d features, d = 1: q = f·(1, 0), k = f·(0, 1); peer
    0's scores (q_0 k_0, q_0 k_1) = (1·2, 1·(-1)) = (2, -1)."""
    from ffl_mm.models.heads import PeerAttention
    attention = PeerAttention(in_channels=2, num_peers=2, embed_channels=1)
    with torch.no_grad():
        attention.query.weight.copy_(torch.tensor([[1., 0.]]))
        attention.key.weight.copy_(torch.tensor([[0., 1.]]))
    feats = [torch.tensor([[1., 2.]]), torch.tensor([[3., -1.]])]
    logits = [torch.tensor([[1., 0., 0.]]), torch.tensor([[0., 1., 0.]])]
    targets, weights = attention(feats, logits)
    e = torch.exp(torch.tensor([2., -1.]))
    row0 = e / e.sum()
    e = torch.exp(torch.tensor([3. * 2., 3. * -1.]))
    row1 = e / e.sum()
    torch.testing.assert_close(weights, torch.stack([row0, row1])[None])
    torch.testing.assert_close(targets[0], torch.tensor(
        [[row0[0], row0[1], 0.]]))
    torch.testing.assert_close(targets[1], torch.tensor(
        [[row1[0], row1[1], 0.]]))
    with pytest.raises(ValueError, match='built for 2 peers, got 1'):
        attention(feats[:1], logits[:1])


def test_the_leader_predicts_and_bad_setups_are_named():
    model_cfg = Config.fromfile(osp.join(REPO, MODEL)).model
    model_cfg.backbone.depth = 8
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        model = MODELS.build(model_cfg)
        assert model.predict_mode == 'branch3'
        assert model.peer_attention.in_channels == 64
        assert model.peer_attention.num_peers == 3
        model.eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            out = model(x, mode='tensor')
            pred = model.predict(x)
        torch.testing.assert_close(pred[0].pred_score,
                                   out['branch3'][0].softmax(0))
        with pytest.raises(ValueError, match='num_branches=2; it needs at '
                           'least 2 peers and the group leader'):
            MODELS.build(dict(model_cfg, num_branches=2))
        mixed = dict(model_cfg, num_branches=None, shared_stages=0,
                     backbone=[dict(type='CIFARResNet', depth=8)] * 3 +
                     [dict(type='WideResNet', depth=10, widen_factor=2)])
        mixed['backbone'][1] = dict(type='WideResNet', depth=10,
                                    widen_factor=2)
        with pytest.raises(ValueError, match=r"the peers' features differ "
                           r'in size \(\[64, 128, 64\]'):
            MODELS.build(mixed)
        with pytest.raises(ValueError, match=r"PeerKDLoss takes the "
                           r"training targets \[\], and OKDDipClassifier "
                           r"gives \['peer_targets'\]. Use a loss that takes "
                           r"\['peer_targets'\] \(DiversePeerKDLoss\)"):
            MODELS.build(dict(model_cfg, distill_loss=dict(
                type='PeerKDLoss')))
        with pytest.raises(TypeError, match='peer_attention belongs to '
                           'OKDDipClassifier'):
            MODELS.build(dict(model_cfg, type='MultiBranchClassifier',
                              distill_loss=None))


@pytest.mark.parametrize('method', ['okddip', 'clilr'])
def test_the_leader_or_a_head_exports_as_a_plain_mmpretrain_model(method):
    """On MMPretrain's own backbone the exported leader (OKDDip) or head
    (CL-ILR) is an ImageClassifier of MMPretrain's components only, built
    in MMPretrain's scope, predicting what it predicts inside the model."""
    from mmengine.runner.checkpoint import load_state_dict

    from ffl_mm.apis import export
    cfg = Config.fromfile(
        f'{REPO}/configs/{method}/{method}_resnet32x{4 if method == "okddip" else 3}_cifar100.py')  # noqa: E501
    cfg.model.backbone = dict(type='mmpretrain.ResNet_CIFAR', depth=18,
                              stem_channels=16, base_channels=16)
    with DefaultScope.overwrite_default_scope('ffl_mm'):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32), mode='tensor')  # move BN stats
    model.eval()
    branch = model.num_branches - 1
    out_cfg, state = export.export_branch(cfg, model, branch)
    assert export.ffl_mm_types(out_cfg) == []
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
        student = MMPRETRAIN_MODELS.build(out_cfg['model']).eval()
    load_state_dict(student, state, strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model(x, mode='tensor')[f'branch{branch}']
        got = student(x, mode='tensor')
    torch.testing.assert_close(got, want)
