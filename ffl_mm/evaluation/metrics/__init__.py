# Copyright (c) ffl_mm contributors.
from .multi_branch_accuracy import MultiBranchAccuracy

__all__ = ['MultiBranchAccuracy']
