# FFL-S with two CIFAR ResNet-32 branches: the stem and stages 1-2 are
# shared, stage 3 and the classifier are per branch; the fusion module fuses
# the two 64-channel stage-3 maps. 849,148 parameters for CIFAR-100, as the
# authors' model.
model = dict(
    type='MultiBranchClassifier',
    num_branches=2,
    shared_stages=2,
    backbone=dict(type='CIFARResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    fusion_neck=dict(
        type='FFLFusionNeck', in_channels=64, num_branches=2,
        out_channels=64),
    fusion_head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    # T = 3; w(e) = exp(-5 (1 - min(e, 80) / 80)^2)
    distill_loss=dict(
        type='MutualKDLoss', temperature=3.0, loss_weight=1.0, rampup=80),
    test_cfg=dict(predict='fused'),
)
