# MFEF on ImageNet ResNet-34x2 (stages 1-3 shared): a reconstruction.
_base_ = ['../ffl/ffl_resnet34x2_imagenet.py']
model = dict(
    fusion_pre_neck=[
        dict(type='MultiScaleNeck', scales=4),
        dict(type='DualAttentionNeck', reduction=16, kernel_size=7),
    ])
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'fusion_pre_necks': dict(decay_mult=0.1)}))
