# The single-network baseline of ffl/ffl_resnet32x2_digits.py: one CIFAR
# ResNet-32, same data, schedule and budget.
_base_ = [
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CIFARResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
