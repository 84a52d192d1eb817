# Copyright (c) ffl_mm contributors.
from .multi_branch import MultiBranchClassifier

__all__ = ['MultiBranchClassifier']
