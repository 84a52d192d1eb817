# FFL (Kim et al., ICPR 2020), two shared-trunk ResNet-32 on CIFAR-100.
# Published (FFL-S, later common-setup comparison): 72.18 % top-1.
_base_ = [
    '../_base_/models/ffl_cifar-resnet32x2.py',
    '../_base_/datasets/cifar100_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/schedules/fusion_decay.py',
    '../_base_/default_runtime_cifar.py',
]
optim_wrapper = dict(paramwise_cfg={{_base_.fusion_paramwise_cfg}})
