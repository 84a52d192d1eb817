# Baseline of ffl/ffl_resnet32x2_cifar100.py: one ResNet-32 (472,756
# parameters), the same data and schedule. Published: about 71.1 % top-1.
_base_ = [
    '../_base_/datasets/cifar100_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CIFARResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
val_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
