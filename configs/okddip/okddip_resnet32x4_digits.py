# The demo for OKDDip: three CIFAR ResNet-32 peers and a group leader on a
# shared trunk on the embedded digits data, on the schedule of
# ffl/ffl_resnet32x2_digits.py.
_base_ = [
    '../_base_/models/okddip_cifar-resnet32x4.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime_digits.py',
]
model = dict(
    head=dict(num_classes=10),
    # the CIFAR ramp (80 of 300 epochs) scaled to 4 of 15, as FFL's demo
    distill_loss=dict(rampup=4))
