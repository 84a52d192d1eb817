# The demo for ONE: two CIFAR ResNet-32 on the embedded digits data, on
# the schedule of ffl/ffl_resnet32x2_digits.py. Recipe: the authors' code
# (gate, T = 3, ramp-up); deviations: the digits schedule (15 epochs,
# Nesterov momentum) and the ramp scaled to it (4 epochs).
_base_ = [
    '../_base_/models/one_cifar-resnet32x2.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime_digits.py',
]
model = dict(
    head=dict(num_classes=10),
    # the CIFAR ramp (80 of 300 epochs) scaled to 4 of 15, as FFL's demo
    distill_loss=dict(rampup=4))
