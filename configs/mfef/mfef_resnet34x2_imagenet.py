# MFEF on ImageNet ResNet-34x2 (stages 1-3 shared): a reconstruction.
_base_ = [
    '../ffl/ffl_resnet34x2_imagenet.py',
    '../_base_/models/mfef_pre_neck.py',
]
model = dict(fusion_pre_neck={{_base_.mfef_pre_neck}})
optim_wrapper = dict(paramwise_cfg={{_base_.mfef_paramwise_cfg}})
