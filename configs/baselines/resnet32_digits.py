# The single-network baseline of ffl/ffl_resnet32x2_digits.py: one CIFAR
# ResNet-32, same data, schedule and budget.
_base_ = [
    '../_base_/models/cifar-resnet32.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime_digits.py',
]
model = dict(head=dict(num_classes=10))
# one output: MMPretrain's Accuracy
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
