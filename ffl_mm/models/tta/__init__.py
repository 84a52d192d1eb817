# Copyright (c) ffl_mm contributors.
from .multi_branch_tta import MultiBranchTTA

__all__ = ['MultiBranchTTA']
