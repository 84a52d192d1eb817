# FFL with two independent MobileNetV2 (1.0x) branches on ImageNet, on
# MMPretrain's MobileNetV2 recipe (SGD lr 0.045 for batch 256, weight decay
# 4e-5, lr x0.98 every epoch, 300 epochs; baseline:
# mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py). MobileNetV2 has no
# ResNet stages to share, so the branches are independent. Channels are
# inferred: heads and fusion neck 1280.
#   tools/dist_train.sh configs/ffl/ffl_mobilenet-v2x2_imagenet.py 8
_base_ = ['./ffl_resnet34x2_imagenet.py']
model = dict(
    shared_stages=0,
    backbone=dict(_delete_=True, type='MobileNetV2', widen_factor=1.0),
    # the CIFAR ramp: 80 of 300 epochs (reconstruction)
    distill_loss=dict(rampup=80))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.045, momentum=0.9, weight_decay=4e-5))
param_scheduler = dict(
    _delete_=True, type='StepLR', by_epoch=True, step_size=1, gamma=0.98)
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
