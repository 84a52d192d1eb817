# DML (Zhang et al., CVPR 2018) with two independent CIFAR ResNet-32
# (./cifar-resnet32x2.py without the shared trunk); each network
# learns from the labels and from its peer's prediction (PeerKDLoss, the
# peer fixed). The paper's settings: no temperature (T = 1) and the networks
# updated one after the other within an iteration
# (branch_update='one_by_one'); OKDDip's and MCL-OKD's code update them
# together with T = 3 / T = 2 (both are arguments).
_base_ = ['./cifar-resnet32x2.py']
model = dict(
    type='DMLClassifier',
    shared_stages=0,
    distill_loss=dict(
        type='PeerKDLoss', temperature=1.0, loss_weight=1.0,
        rampup=None, peer_target='each'),
    branch_update='one_by_one',
    # the ensemble: the mean of the networks' logits
    test_cfg=dict(predict='ensemble'),
)
