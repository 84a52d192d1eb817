# Published (FFL-S): 77.22 % top-1. 3,074,748 parameters.
_base_ = ['./ffl_resnet32x2_cifar100.py']
model = dict(backbone=dict(depth=110))
