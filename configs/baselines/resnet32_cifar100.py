# Baseline of ffl/ffl_resnet32x2_cifar100.py: one ResNet-32 (472,756
# parameters), the same data and schedule. Published: about 71.1 % top-1.
_base_ = [
    '../_base_/models/cifar-resnet32.py',
    '../_base_/datasets/cifar100_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/default_runtime_cifar.py',
]
val_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
