_base_ = ['./mfef_resnet32x2_cifar100.py']
model = dict(
    backbone=dict(_delete_=True, type='WideResNet', depth=16, widen_factor=2),
    head=dict(in_channels=128),
    fusion_neck=dict(in_channels=128, out_channels=128),
    fusion_head=dict(in_channels=128))
