# The single-network baseline of ffl/ffl_resnet32x2_digits.py: one CIFAR
# ResNet-32, same data, schedule and budget.
_base_ = [
    '../_base_/models/cifar-resnet32.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=10))
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2))
