# DML (Zhang et al., CVPR 2018) with two independent CIFAR ResNet-32: no
# shared trunk, no fusion; each network learns from the labels and from its
# peer's prediction (PeerKDLoss, the peer fixed). The paper's settings: no
# temperature (T = 1) and the networks updated one after the other within
# an iteration (branch_update='one_by_one'); OKDDip's and MCL-OKD's code
# update them together with T = 3 / T = 2 (both are arguments).
# Classifiers: PyTorch's default initialisation, as FFL's configs.
model = dict(
    type='MultiBranchClassifier',
    _scope_='ffl_mm',
    num_branches=2,
    shared_stages=0,
    backbone=dict(type='CIFARResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TorchDefault', layer='Linear')),
    distill_loss=dict(
        type='PeerKDLoss', temperature=1.0, loss_weight=1.0, rampup=None,
        peer_target='each'),
    branch_update='one_by_one',
    # the ensemble: the mean of the networks' logits
    test_cfg=dict(predict='ensemble'),
)
tta_model = dict(type='MultiBranchTTA')
