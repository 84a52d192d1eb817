_base_ = ['./resnet32_cifar100.py']
model = dict(backbone=dict(depth=110))
