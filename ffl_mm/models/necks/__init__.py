# Copyright (c) ffl_mm contributors.
from .ffl_fusion_neck import FFLFusionNeck

__all__ = ['FFLFusionNeck']
