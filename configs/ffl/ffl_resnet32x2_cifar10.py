# Published (FFL-S): 94.01 % top-1. 831,598 parameters.
_base_ = [
    '../_base_/models/ffl_cifar-resnet32x2.py',
    '../_base_/datasets/cifar10_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/schedules/fusion_decay.py',
    '../_base_/default_runtime_cifar.py',
]
optim_wrapper = dict(paramwise_cfg={{_base_.fusion_paramwise_cfg}})
model = dict(head=dict(num_classes=10), fusion_head=dict(num_classes=10))
