# DML (Zhang et al., CVPR 2018), two independent CIFAR ResNet-32 on
# CIFAR-100, on FFL's schedule and data (so FFL, MFEF, DML and ONE compare
# on one recipe). Published figures: configs/dml/README.md.
_base_ = [
    '../_base_/models/dml_cifar-resnet32x2.py',
    '../_base_/datasets/cifar100_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/default_runtime_cifar.py',
]
