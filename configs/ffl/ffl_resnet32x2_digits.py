# The demo: FFL-S with two CIFAR ResNet-32 on the embedded digits data, a
# few CPU minutes. The KD ramp (80 of 300 epochs) is scaled to 4 of 15.
_base_ = [
    '../_base_/models/ffl_cifar-resnet32x2.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/schedules/fusion_decay.py',
    '../_base_/default_runtime_digits.py',
]
model = dict(
    head=dict(num_classes=10),
    fusion_head=dict(num_classes=10),
    distill_loss=dict(rampup=4))
optim_wrapper = dict(paramwise_cfg={{_base_.fusion_paramwise_cfg}})
