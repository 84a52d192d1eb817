# Baseline of ffl/ffl_resnet32x2_cifar10.py (466,906 parameters).
_base_ = [
    '../_base_/models/cifar-resnet32.py',
    '../_base_/datasets/cifar10_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/default_runtime_cifar.py',
]
model = dict(head=dict(num_classes=10))
val_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
