# The MFEF demo on the embedded digits data (make demo METHOD=mfef).
_base_ = [
    '../ffl/ffl_resnet32x2_digits.py',
    '../_base_/models/mfef_pre_neck.py',
]
model = dict(fusion_pre_neck={{_base_.mfef_pre_neck}})
optim_wrapper = dict(paramwise_cfg={{_base_.mfef_paramwise_cfg}})
