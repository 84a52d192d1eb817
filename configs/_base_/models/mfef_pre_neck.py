# MFEF (Zou et al., ICANN 2022), a reconstruction: each branch's last map
# passes through multi-scale extraction (4 channel groups, residual) and
# dual attention (channel then spatial, CBAM-style) before the fusion
# module; the losses are FFL's. An MFEF config inherits its FFL config and
# this file, and sets
#     model = dict(fusion_pre_neck={{_base_.mfef_pre_neck}})
# (a variable, not `model`: MMEngine refuses one key defined in two bases of
# one config). The branch heads see the raw maps (heads_on_enhanced=False,
# the default), so each student exports as a plain network. These modules
# get the fusion weight decay of fusion_decay.py:
#     optim_wrapper = dict(paramwise_cfg={{_base_.mfef_paramwise_cfg}})
# (merged into the FFL config's custom_keys).
mfef_pre_neck = [
    dict(type='MultiScaleNeck', scales=4, hierarchical=False, residual=True),
    dict(type='DualAttentionNeck', reduction=16, kernel_size=7),
]
mfef_paramwise_cfg = dict(
    custom_keys={'fusion_pre_necks': dict(decay_mult=0.1)})
