# Copyright (c) ffl_mm contributors.
from . import branch_cfgs, channel_probe, output_names
from .recompute import buffers_kept, recompute_in_backward
from .torch_default_init import TorchDefaultInit
from .trunk_split import TrunkSplit

__all__ = [
    'TorchDefaultInit', 'TrunkSplit', 'branch_cfgs', 'buffers_kept',
    'channel_probe',
    'output_names', 'recompute_in_backward'
]
