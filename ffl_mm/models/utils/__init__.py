# Copyright (c) ffl_mm contributors.
from .trunk_split import TrunkSplit

__all__ = ['TrunkSplit']
