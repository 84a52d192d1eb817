# The demo for KDCL: two CIFAR ResNet-32 students on the embedded digits
# data, on the schedule of ffl/ffl_resnet32x2_digits.py, each on its own
# crop (the digits augmentation, drawn per student: no flip). Recipe: see
# ../_base_/models/kdcl_cifar-resnet32x2.py; deviation: the digits
# schedule (15 epochs).
_base_ = [
    '../_base_/models/kdcl_cifar-resnet32x2.py',
    '../_base_/datasets/digits_bs64.py',
    '../_base_/schedules/digits_bs64.py',
    '../_base_/default_runtime_digits.py',
]
model = dict(head=dict(num_classes=10))
# views of each image stacked (B, 2, 3, H, W); one view in testing
data_preprocessor = dict(type='MultiViewClsDataPreprocessor')
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='MultiView', num_views=2, transforms=[[
        dict(type='BorderPad', padding=2, padding_mode='reflect'),
        dict(type='RandomCrop', crop_size=32),
    ]]),
    dict(type='PackInputs'),
]))
