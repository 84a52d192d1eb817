# MFEF (Zou et al., ICANN 2022), a reconstruction: FFL-S ResNet-32x2 whose
# stage-3 maps pass, per branch, through multi-scale extraction (4 groups)
# and dual attention (channel then spatial) before the fusion module. The
# losses are FFL's. The branch heads see the raw maps (heads_on_enhanced
# False), so each student exports as a plain ResNet-32. The enhancement
# modules train with the fusion module's weight decay (1e-5).
_base_ = ['../ffl/ffl_resnet32x2_cifar100.py']
model = dict(
    fusion_pre_neck=[
        dict(type='MultiScaleNeck', scales=4, hierarchical=False,
             residual=True),
        dict(type='DualAttentionNeck', reduction=16, kernel_size=7),
    ],
    heads_on_enhanced=False)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'fusion_pre_necks': dict(decay_mult=0.1)}))
