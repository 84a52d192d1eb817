# MFEF on FFL-S ResNet-32x2 for CIFAR-10.
_base_ = [
    '../ffl/ffl_resnet32x2_cifar10.py',
    '../_base_/models/mfef_pre_neck.py',
]
model = dict(fusion_pre_neck={{_base_.mfef_pre_neck}})
optim_wrapper = dict(paramwise_cfg={{_base_.mfef_paramwise_cfg}})
