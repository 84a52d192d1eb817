# Copyright (c) ffl_mm contributors.
from .recompute import buffers_kept, recompute_in_backward
from .trunk_split import TrunkSplit

__all__ = ['TrunkSplit', 'buffers_kept', 'recompute_in_backward']
