# KDCL on ImageNet with two independent MMPretrain ResNet-34 students (the
# branches of ../_base_/models/resnet34x2.py without the shared trunk),
# each on its own RandomResizedCrop and flip of the image, on FFL's
# ImageNet data and schedule. Recipe: the MinLogit teacher, T = 3, KD
# weight 1, no ramp-up (as the CIFAR config).
#   tools/dist_train.sh configs/kdcl/kdcl_resnet34x2_imagenet.py 8
_base_ = [
    '../_base_/models/resnet34x2.py',
    '../_base_/datasets/imagenet_bs32_ffl.py',
    '../_base_/schedules/imagenet_bs256_ffl.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='KDCLClassifier',
    shared_stages=0,
    teacher='min_logit',
    distill_loss=dict(
        type='TeacherKDLoss', temperature=3.0, loss_weight=1.0, rampup=None),
    test_cfg=dict(predict='ensemble'),
)
data_preprocessor = dict(type='MultiViewClsDataPreprocessor')
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[[
        dict(type='RandomResizedCrop', scale=224),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    ]]),
    dict(type='PackInputs'),
]))
