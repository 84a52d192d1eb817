# ONE on ImageNet with MMPretrain's ResNet-34: the stem and stages 1-3
# shared, stage 4 and the classifier per branch, the gate on the stage-3
# output (as ffl/ffl_resnet34x2_imagenet.py shares them; the ONE paper's
# ImageNet ResNet-18 shares up to stage 3 as well), on the same schedule.
#   tools/dist_train.sh configs/one/one_resnet34x2_imagenet.py 8
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../_base_/default_runtime.py',
]
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
    ensemble_head=dict(type='GatedEnsembleHead', gate_input='trunk'),
    # the CIFAR ramp (80 of 300 epochs) scaled to 100 epochs, as FFL's
    distill_loss=dict(
        type='MutualKDLoss', temperature=3.0, rampup=27,
        distill_fused=False),
    test_cfg=dict(predict='ensemble'),
)
tta_model = dict(type='MultiBranchTTA')
val_evaluator = dict(_delete_=True, type='MultiBranchAccuracy', topk=(1, 5))
test_evaluator = val_evaluator
