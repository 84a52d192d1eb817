# FFL-S with two WRN-16-2 branches (stem and stages 1-2 shared); channels
# (128) are inferred.
_base_ = ['./ffl_resnet32x2_cifar100.py']
model = dict(
    backbone=dict(_delete_=True, type='WideResNet', depth=16, widen_factor=2))
