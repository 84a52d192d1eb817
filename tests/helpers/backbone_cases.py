# Copyright (c) ffl_mm contributors.
"""FFL on MMPretrain's backbone families, for the any-backbone tests and
the ONNX export matrix."""

NUM_CLASSES = 5


def ffl_on(backbone, num_branches=2, **kwargs):
    """FFL with no in_channels anywhere: all of them are inferred."""
    cfg = dict(
        type='FFLClassifier',
        backbone=backbone,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES),
        fusion_neck=dict(type='FFLFusionNeck'),
        fusion_head=dict(type='LinearClsHead', num_classes=NUM_CLASSES),
        distill_loss=dict(type='MutualKDLoss', rampup=0))
    if not isinstance(backbone, list):
        cfg['num_branches'] = num_branches
    cfg.update(kwargs)
    return cfg


# (backbone config, channels of the fused map): eleven MMPretrain families
BACKBONES = {
    'ResNet-18': (dict(type='ResNet', depth=18), 512),
    'ResNet_CIFAR-18': (dict(type='ResNet_CIFAR', depth=18), 512),
    # the 50-layer designs at a quarter of the width (the same code paths)
    'ResNeXt-50': (dict(type='ResNeXt', depth=50, groups=8,
                        width_per_group=4, stem_channels=16,
                        base_channels=16), 512),
    'SEResNet-50': (dict(type='SEResNet', depth=50, stem_channels=16,
                         base_channels=16), 512),
    'MobileNetV2': (dict(type='MobileNetV2', widen_factor=0.5), 1280),
    'MobileNetV3': (dict(type='MobileNetV3', arch='small'), 576),
    'ShuffleNetV2': (dict(type='ShuffleNetV2', widen_factor=0.5), 1024),
    'RegNet': (dict(type='RegNet', arch='regnetx_400mf'), 384),
    'EfficientNet': (dict(type='EfficientNet', arch='b0'), 1280),
    'ConvNeXt': (dict(type='ConvNeXt', arch='atto',
                      gap_before_final_norm=False), 320),
    'ViT': (dict(type='VisionTransformer', arch='deit-tiny', img_size=32,
                 patch_size=16, out_type='featmap'), 192),
}
