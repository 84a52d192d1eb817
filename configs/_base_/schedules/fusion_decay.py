# FFL trains the fusion module and the fused classifier with a tenth of the
# network's weight decay (1e-5 against 1e-4); MFEF's enhancement modules
# get the same (../models/mfef_pre_neck.py adds their key). A config
# inherits this file and sets
#     optim_wrapper = dict(paramwise_cfg={{_base_.fusion_paramwise_cfg}})
# (a variable, not `optim_wrapper`: MMEngine refuses one key defined in two
# bases of one config, and every schedule base defines optim_wrapper).
# custom_keys match module names; with ffl_mm's schedules a key that matches
# no parameter is an error (CheckedOptimWrapperConstructor), so a model
# without a fusion module must not inherit them.
fusion_paramwise_cfg = dict(
    custom_keys={
        'fusion_neck': dict(decay_mult=0.1),
        'fusion_head': dict(decay_mult=0.1),
    })
