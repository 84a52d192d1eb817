# FFL with two different branches on CIFAR-100: a CIFAR ResNet-32 (64
# channels at 8x8) and a WRN-16-2 (128 channels at 8x8), independent (no
# shared trunk). Channels are inferred: the heads get 64 and 128, the
# fusion neck [64, 128] (the ResNet-32 map is projected to 128 channels by
# a 1x1 conv + BN before the depthwise/pointwise fusion), the fused head 128.
_base_ = ['./ffl_resnet32x2_cifar100.py']
model = dict(
    num_branches=None,
    shared_stages=0,
    backbone=[
        dict(type='CIFARResNet', depth=32),
        dict(type='WideResNet', depth=16, widen_factor=2),
    ])
