# One classic CIFAR ResNet-32 in MMPretrain's ImageClassifier: the
# single-network baseline of FFL (472,756 parameters for CIFAR-100), its
# classifier initialised like the authors' (PyTorch's default, as in
# ffl_cifar-resnet32x2.py).
# _scope_: built in ffl_mm's registries whatever the current scope
# (MMPretrain's get_model and inferencers build in 'mmpretrain').
model = dict(
    type='ImageClassifier',
    _scope_='ffl_mm',
    backbone=dict(type='CIFARResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
        init_cfg=dict(type='TorchDefault', layer='Linear')))
