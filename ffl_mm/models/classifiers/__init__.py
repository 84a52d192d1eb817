# Copyright (c) ffl_mm contributors.
from .branch_features import BranchFeatures
from .clilr import CLILRClassifier
from .dml import DMLClassifier
from .ffl import FFLClassifier
from .kdcl import KDCLClassifier
from .multi_branch import MultiBranchClassifier
from .okddip import OKDDipClassifier
from .one import ONEClassifier

__all__ = [
    'BranchFeatures', 'CLILRClassifier', 'DMLClassifier', 'FFLClassifier',
    'KDCLClassifier', 'MultiBranchClassifier', 'OKDDipClassifier',
    'ONEClassifier'
]
