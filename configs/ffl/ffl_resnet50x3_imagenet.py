# FFL-S with three ResNet-50 branches on ImageNet: stem and stages 1-3
# shared, stage 4 and the classifier per branch. Channels are inferred
# (2048 for every head and branch map). Same schedule as ResNet-34x2.
_base_ = ['./ffl_resnet34x2_imagenet.py']
model = dict(num_branches=3, backbone=dict(depth=50))
