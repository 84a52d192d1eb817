_base_ = ['../ffl/ffl_resnet32x2_cifar10.py']
model = dict(
    fusion_pre_neck=[
        dict(type='MultiScaleNeck', scales=4),
        dict(type='DualAttentionNeck', reduction=16, kernel_size=7),
    ])
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'fusion_pre_necks': dict(decay_mult=0.1)}))
