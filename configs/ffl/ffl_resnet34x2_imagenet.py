# FFL-S on ImageNet with MMPretrain's ResNet-34: the stem and stages 1-3
# are shared, stage 4 and the classifier are per branch (a reconstruction:
# the authors published no ImageNet recipe). MMPretrain's standard ResNet
# ImageNet schedule for 8 GPUs x 32 images (SGD lr 0.1 for batch 256,
# 100 epochs, steps at 30/60/90), fusion module with weight decay 1e-5.
#   tools/dist_train.sh configs/ffl/ffl_resnet34x2_imagenet.py 8
_base_ = [
    '../_base_/models/resnet34x2.py',
    '../_base_/datasets/imagenet_bs32_ffl.py',
    '../_base_/schedules/imagenet_bs256_ffl.py',
    '../_base_/schedules/fusion_decay.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='FFLClassifier',
    fusion_neck=dict(type='FFLFusionNeck'),
    fusion_head=dict(
        type='LinearClsHead',
        num_classes=1000,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)),
    # The CIFAR ramp (80 of 300 epochs) scaled to 100 epochs (reconstruction).
    distill_loss=dict(type='MutualKDLoss', temperature=3.0, rampup=27),
    test_cfg=dict(predict='fused'),
)
optim_wrapper = dict(paramwise_cfg={{_base_.fusion_paramwise_cfg}})
