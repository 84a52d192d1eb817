# Copyright (c) ffl_mm contributors.
from .dual_attention_neck import DualAttentionNeck
from .ffl_fusion_neck import FFLFusionNeck
from .fusion_pre_necks import FusionPreNecks
from .multi_scale_neck import MultiScaleNeck
from .per_map_neck import PerMapNeck

__all__ = [
    'DualAttentionNeck', 'FFLFusionNeck', 'FusionPreNecks', 'MultiScaleNeck',
    'PerMapNeck'
]
