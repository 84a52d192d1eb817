# FFL-S with two CIFAR ResNet-32 branches: the stem and stages 1-2 are
# shared, stage 3 and the classifier are per branch; the fusion module fuses
# the two stage-3 maps. 849,148 parameters for CIFAR-100, as the authors'
# model. in_channels are inferred from the backbones (64 here) and the
# fusion neck's branch count from the model, so a config that changes the
# backbone or num_branches says only that.
# The classifiers keep PyTorch's default initialisation (uniform in
# ±1/sqrt(fan_in), bias too), as in the authors' code; MMPretrain's
# LinearClsHead would draw Normal(0, 0.01) with a zero bias.
# _scope_: built in ffl_mm's registries whatever the current scope
# (MMPretrain's get_model and inferencers build in 'mmpretrain').
model = dict(
    type='MultiBranchClassifier',
    _scope_='ffl_mm',
    num_branches=2,
    shared_stages=2,
    backbone=dict(type='CIFARResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TorchDefault', layer='Linear')),
    fusion_neck=dict(type='FFLFusionNeck'),
    fusion_head=dict(
        type='LinearClsHead',
        num_classes=100,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TorchDefault', layer='Linear')),
    # T = 3; w(e) = exp(-5 (1 - min(e, 80) / 80)^2)
    distill_loss=dict(
        type='MutualKDLoss', temperature=3.0, loss_weight=1.0, rampup=80),
    test_cfg=dict(predict='fused'),
)
# --tta (ours and MMPretrain's tools/test.py): average every output over
# the views, not only pred_score
tta_model = dict(type='MultiBranchTTA')
