# Two MMPretrain ResNet-34 branches for ImageNet sharing the stem and
# stages 1-3 (stage 4 and the classifier per branch), each trained with its
# own cross-entropy: what every method's ImageNet config adds its teacher and
# losses to. The classifiers keep MMPretrain's initialisation (LinearClsHead:
# Normal(0, 0.01), zero bias), as MMPretrain's own ResNet-34 recipe;
# in_channels (512) are inferred.
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
)
# --tta (ours and MMPretrain's tools/test.py): average every output over
# the views, not only pred_score
tta_model = dict(type='MultiBranchTTA')
