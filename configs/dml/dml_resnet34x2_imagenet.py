# DML on ImageNet with two independent MMPretrain ResNet-34 (a reconstruction:
# the paper has no ImageNet recipe), on the schedule of
# ffl/ffl_resnet34x2_imagenet.py (MMPretrain's ResNet ImageNet schedule for
# 8 GPUs x 32 images). The networks are updated together
# (branch_update='together'): the one-by-one update of the paper runs in the
# model's own train_step, which distributed training does not call.
#   tools/dist_train.sh configs/dml/dml_resnet34x2_imagenet.py 8
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='MultiBranchClassifier',
    _scope_='ffl_mm',
    num_branches=2,
    shared_stages=0,
    backbone=dict(
        type='ResNet', depth=34, num_stages=4, out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    distill_loss=dict(type='PeerKDLoss', temperature=1.0),
    branch_update='together',
    test_cfg=dict(predict='ensemble'),
)
tta_model = dict(type='MultiBranchTTA')
val_evaluator = dict(_delete_=True, type='MultiBranchAccuracy', topk=(1, 5))
test_evaluator = val_evaluator
