# FFL-S on ImageNet with MMPretrain's ResNet-34: the stem and stages 1-3
# are shared, stage 4 and the classifier are per branch (a reconstruction:
# the authors published no ImageNet recipe). MMPretrain's standard ResNet
# ImageNet schedule for 8 GPUs x 32 images (SGD lr 0.1 for batch 256,
# 100 epochs, steps at 30/60/90), fusion module with weight decay 1e-5.
# The classifiers keep MMPretrain's initialisation (LinearClsHead: Normal(0,
# 0.01), zero bias), as MMPretrain's own ResNet-34 recipe; in_channels
# (512) are inferred.
#   tools/dist_train.sh configs/ffl/ffl_resnet34x2_imagenet.py 8
_base_ = [
    '../_base_/datasets/imagenet_bs32_ffl.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../_base_/schedules/fusion_decay.py',
    '../_base_/default_runtime.py',
]
# _scope_: built in ffl_mm's registries whatever the current scope
# (MMPretrain's get_model and inferencers build in 'mmpretrain').
model = dict(
    type='MultiBranchClassifier',
    _scope_='ffl_mm',
    num_branches=2,
    shared_stages=3,
    backbone=dict(
        type='ResNet', depth=34, num_stages=4, out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    fusion_neck=dict(type='FFLFusionNeck'),
    fusion_head=dict(
        type='LinearClsHead',
        num_classes=1000,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    # The CIFAR ramp (80 of 300 epochs) scaled to 100 epochs (reconstruction).
    distill_loss=dict(type='MutualKDLoss', temperature=3.0, rampup=27),
    test_cfg=dict(predict='fused'),
)
# a paramwise custom key that matches no parameter is an error
optim_wrapper = dict(
    constructor='CheckedOptimWrapperConstructor',
    paramwise_cfg={{_base_.fusion_paramwise_cfg}})
# --tta (ours and MMPretrain's tools/test.py): average every output over
# the views, not only pred_score
tta_model = dict(type='MultiBranchTTA')
