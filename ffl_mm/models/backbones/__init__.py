# Copyright (c) ffl_mm contributors.
from .cifar_resnet import CIFARResNet
from .wide_resnet import WideResNet

__all__ = ['CIFARResNet', 'WideResNet']
