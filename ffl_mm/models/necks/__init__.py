# Copyright (c) ffl_mm contributors.
from .dual_attention_neck import DualAttentionNeck
from .ffl_fusion_neck import FFLFusionNeck
from .multi_scale_neck import MultiScaleNeck
from .per_map_neck import PerMapNeck

__all__ = [
    'DualAttentionNeck', 'FFLFusionNeck', 'MultiScaleNeck', 'PerMapNeck'
]
