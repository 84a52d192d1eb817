# FFL-S with three ResNet-50 branches on ImageNet: stem and stages 1-3
# shared, stage 4 and the classifier per branch. Channels are inferred
# (2048 for every head and branch map). Same schedule as ResNet-34x2.
_base_ = ['./ffl_resnet34x2_imagenet.py']
model = dict(
    num_branches=3,
    shared_stages=3,
    backbone=dict(depth=50),
    head=dict(_delete_=True, type='LinearClsHead', num_classes=1000,
              topk=(1, 5)),
    fusion_neck=dict(_delete_=True, type='FFLFusionNeck'),
    fusion_head=dict(_delete_=True, type='LinearClsHead', num_classes=1000,
                     topk=(1, 5)))
