# KDCL (Guo et al., CVPR 2020), two independent CIFAR ResNet-32 on
# CIFAR-100, on FFL's schedule and data (so every method compares on one
# recipe), each student on its own view: FFL's augmentation (4-pixel
# reflect padding, flip, 32x32 crop) drawn independently per student.
# Recipe: the MinLogit teacher, T = 3, KD weight 1, no ramp-up (see
# ../_base_/models/kdcl_cifar-resnet32x2.py). Deviations: FFL's schedule
# and augmentation rather than the paper's own; no published figure is
# restated here (configs/kdcl/README.md).
_base_ = [
    '../_base_/models/kdcl_cifar-resnet32x2.py',
    '../_base_/datasets/cifar100_bs128_ffl.py',
    '../_base_/schedules/cifar_bs128_300e_ffl.py',
    '../_base_/default_runtime_cifar.py',
]
# views of each image stacked (B, 2, 3, H, W); one view in testing
data_preprocessor = dict(type='MultiViewClsDataPreprocessor')
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='MultiView', num_views=2, transforms=[[
        dict(type='BorderPad', padding=4, padding_mode='reflect'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='RandomCrop', crop_size=32),
    ]]),
    dict(type='PackInputs'),
]))
