# MFEF with two WRN-16-2 branches (stem and stages 1-2 shared).
_base_ = ['./mfef_resnet32x2_cifar100.py']
model = dict(
    backbone=dict(_delete_=True, type='WideResNet', depth=16, widen_factor=2))
