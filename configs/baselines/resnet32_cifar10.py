_base_ = [
    '../_base_/datasets/cifar10_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
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
val_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
