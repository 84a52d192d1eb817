# OKDDip (Chen et al., AAAI 2020), three CIFAR ResNet-32 peers and a group
# leader on a shared stem and stages 1-2, on CIFAR-100 with FFL's schedule
# and data (so the methods compare on one recipe). Recipe: the authors'
# code (resnet_GL.py, train_GL.py; see
# ../_base_/models/okddip_cifar-resnet32x4.py). Deviations: FFL's schedule
# (SGD lr 0.1, Nesterov momentum 0.9, weight decay 1e-4, 300 epochs, lr
# x0.1 at 150 and 225; their train_GL.py: weight decay 5e-4). The KD
# ramp-up is theirs: exp(-5 (1 - e/80)^2) from epoch 0, 80 of 300 epochs.
# The leader (branch3) is the default prediction and the model to
# deploy: tools/export.py --branch 3.
_base_ = [
    '../_base_/models/okddip_cifar-resnet32x4.py',
    '../_base_/datasets/cifar100_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/default_runtime_cifar.py',
]
