# OKDDip (Chen, Mei, Wang, Feng, Chen, AAAI 2020) with four CIFAR ResNet-32
# branches (./cifar-resnet32x2.py with num_branches=4: stem and stages 1-2
# shared, stage 3 and the classifier per branch): branches 0-2 the peers,
# branch 3 the group leader (deployed, the default prediction). The
# authors' code (resnet_GL.py, train_GL.py): query and key projections
# shared by the peers (64 -> 8, no bias) give each peer its attention over
# the peers and its target, the attention-weighted mix of their logits;
# the leader learns from the peers' mean; T = 3; the targets keep their
# graph (the attention learns only through them); the KD weight ramped up
# over 80 epochs, as in their code and the ONE configs. Tested against
# that code step by step: tests/test_models/test_classifiers/test_okddip.py.
_base_ = ['./cifar-resnet32x2.py']
model = dict(
    type='OKDDipClassifier',
    num_branches=4,
    peer_attention=dict(type='PeerAttention'),
    distill_loss=dict(
        type='DiversePeerKDLoss', temperature=3.0, loss_weight=1.0,
        rampup=80, detach_targets=False),
)
