# The demo for DML: two CIFAR ResNet-32 on the embedded digits data, on
# the schedule of ffl/ffl_resnet32x2_digits.py.
_base_ = [
    '../_base_/models/dml_cifar-resnet32x2.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime_digits.py',
]
model = dict(
    head=dict(num_classes=10),
    # The KD weight ramps up over the first 4 of 15 epochs, as in FFL's and
    # ONE's digits configs. The DML paper has no ramp; without it, on this
    # 330-iteration schedule, each network was pulled towards its peer's
    # early, near-random predictions and one of the two often ended far
    # below the single network (docs/results.md).
    distill_loss=dict(rampup=4))
