_base_ = ['./ffl_resnet32x2_cifar100.py']
model = dict(backbone=dict(depth=56))
