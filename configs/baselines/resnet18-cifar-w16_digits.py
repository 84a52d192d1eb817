# A stock MMPretrain classifier (ImageClassifier + ResNet_CIFAR-18 at width
# 16) on the embedded digits data: the plugin's tools with nothing of
# ffl_mm's in the model.
_base_ = [
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime_digits.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR', depth=18, base_channels=16, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
# two log records an epoch (see ffl/ffl_resnet32x2_digits.py)
# one output: MMPretrain's Accuracy
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
