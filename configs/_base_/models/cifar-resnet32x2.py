# Two CIFAR ResNet-32 branches sharing the stem and stages 1-2 (stage 3 and
# the classifier per branch), each trained with its own cross-entropy: what
# every method's model base adds its teacher and losses to. in_channels are
# inferred from the backbones (64 here), so a config that changes the
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
)
# --tta (ours and MMPretrain's tools/test.py): average every output over
# the views, not only pred_score
tta_model = dict(type='MultiBranchTTA')
