_base_ = ['./mfef_resnet32x2_cifar100.py']
model = dict(backbone=dict(depth=110))
