# OKDDip on ImageNet with MMPretrain's ResNet-34 (a reconstruction: the
# authors' code is for CIFAR): the data and schedule of
# ffl/ffl_resnet34x2_imagenet.py, three peers and a group leader on its
# shared stem and stages 1-3 (../_base_/models/resnet34x2.py), the
# attention's projections 512 -> 64 (the CIFAR ratio), T = 3, the targets'
# graph kept. The leader (branch3) is the default prediction.
#   tools/dist_train.sh configs/okddip/okddip_resnet34x4_imagenet.py 8
_base_ = [
    '../_base_/models/resnet34x2.py',
    '../_base_/datasets/imagenet_bs32_ffl.py',
    '../_base_/schedules/imagenet_bs256_ffl.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='OKDDipClassifier',
    num_branches=4,
    peer_attention=dict(type='PeerAttention'),
    # FFL's ramp (the CIFAR 80 of 300 epochs scaled to 100 epochs)
    distill_loss=dict(
        type='DiversePeerKDLoss', temperature=3.0, rampup=27,
        detach_targets=False),
)
