# CL-ILR (Song and Chai, NeurIPS 2018) with three CIFAR ResNet-32 heads
# (./cifar-resnet32x2.py with num_branches=3: stem and stages 1-2 shared,
# stage 3 and the classifier per head). The public code (the OKDDip
# repository's resnet_one.py, avg=True, bpscale=True): the trunk's gradient
# divided by the number of heads in backward (grad_rescale), each head
# distilled from the mean of the other heads' logits at T = 3 with the
# target's graph kept (PeerKDLoss peer_target='mean_logits',
# detach_peers=False), the KD weight ramped up over 80 epochs (as in their
# code and the ONE configs); no cross-entropy on the ensemble. Tested
# against that code step by step: tests/test_models/test_classifiers/test_clilr.py.
_base_ = ['./cifar-resnet32x2.py']
model = dict(
    type='CLILRClassifier',
    num_branches=3,
    grad_rescale=True,
    distill_loss=dict(
        type='PeerKDLoss', temperature=3.0, loss_weight=1.0, rampup=80,
        peer_target='mean_logits', detach_peers=False),
    # the ensemble: the mean of the heads' logits
    test_cfg=dict(predict='ensemble'),
)
