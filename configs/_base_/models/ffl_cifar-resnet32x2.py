# FFL-S with two CIFAR ResNet-32 branches (./cifar-resnet32x2.py): the
# fusion module fuses the two stage-3 maps into the fused classifier.
# 849,148 parameters for CIFAR-100, as the authors' model. The fusion
# neck's in_channels and branch count come from the model.
_base_ = ['./cifar-resnet32x2.py']
model = dict(
    type='FFLClassifier',
    fusion_neck=dict(type='FFLFusionNeck'),
    fusion_head=dict(
        type='LinearClsHead',
        num_classes=100,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TorchDefault', layer='Linear')),
    # T = 3; w(e) = exp(-5 (1 - min(e, 80) / 80)^2)
    distill_loss=dict(
        type='MutualKDLoss', temperature=3.0, loss_weight=1.0, rampup=80),
    test_cfg=dict(predict='fused'),
)
