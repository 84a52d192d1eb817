# The single-network baseline of ffl/ffl_resnet32x2_digits.py: one CIFAR
# ResNet-32, same data, schedule and budget.
_base_ = [
    '../_base_/models/cifar-resnet32.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=10))
# 22 iterations an epoch: two log records each (MMPretrain's analyze_logs.py
# cal_train_time drops an epoch's first record)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=5, max_keep_ckpts=2))
