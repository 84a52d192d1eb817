# The demo for DML: two CIFAR ResNet-32 on the embedded digits data, on
# the schedule of ffl/ffl_resnet32x2_digits.py. Recipe: OKDDip's public
# DML code (T = 3, the networks updated together, no ramp-up; see
# ../_base_/models/dml_cifar-resnet32x2.py); deviation: the digits
# schedule (15 epochs, Nesterov momentum, weight decay 1e-4). The paper's
# settings (T = 1, one by one) trained far worse here over 5 seeds
# (docs/results.md, "DML's settings").
_base_ = [
    '../_base_/models/dml_cifar-resnet32x2.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime_digits.py',
]
model = dict(head=dict(num_classes=10))
