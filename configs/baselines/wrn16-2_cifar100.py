_base_ = ['./resnet32_cifar100.py']
model = dict(
    backbone=dict(_delete_=True, type='WideResNet', depth=16, widen_factor=2),
    head=dict(in_channels=128))
