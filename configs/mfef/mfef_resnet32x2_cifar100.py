# MFEF (Zou et al., ICANN 2022), a reconstruction (see
# ../_base_/models/mfef_pre_neck.py), on FFL-S ResNet-32x2 for CIFAR-100.
_base_ = [
    '../ffl/ffl_resnet32x2_cifar100.py',
    '../_base_/models/mfef_pre_neck.py',
]
model = dict(fusion_pre_neck={{_base_.mfef_pre_neck}})
optim_wrapper = dict(paramwise_cfg={{_base_.mfef_paramwise_cfg}})
