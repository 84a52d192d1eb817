# Copyright (c) ffl_mm contributors.
from .dml import DMLClassifier
from .ffl import FFLClassifier
from .multi_branch import BranchFeatures, MultiBranchClassifier
from .one import ONEClassifier

__all__ = [
    'BranchFeatures', 'DMLClassifier', 'FFLClassifier',
    'MultiBranchClassifier', 'ONEClassifier'
]
