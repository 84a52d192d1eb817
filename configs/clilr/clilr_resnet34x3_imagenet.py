# CL-ILR on ImageNet with MMPretrain's ResNet-34 (a reconstruction: the
# paper's ImageNet recipe is not public code): the data and schedule of
# ffl/ffl_resnet34x2_imagenet.py, three heads on its shared stem and stages
# 1-3 (../_base_/models/resnet34x2.py), the trunk's gradient divided by 3,
# each head distilled from the mean of the others (T = 3, the targets'
# graph kept, as the CIFAR config).
#   tools/dist_train.sh configs/clilr/clilr_resnet34x3_imagenet.py 8
_base_ = [
    '../_base_/models/resnet34x2.py',
    '../_base_/datasets/imagenet_bs32_ffl.py',
    '../_base_/schedules/imagenet_bs256_ffl.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='CLILRClassifier',
    num_branches=3,
    grad_rescale=True,
    # FFL's ramp (the CIFAR 80 of 300 epochs scaled to 100 epochs)
    distill_loss=dict(
        type='PeerKDLoss', temperature=3.0, rampup=27,
        peer_target='mean_logits', detach_peers=False),
    test_cfg=dict(predict='ensemble'),
)
