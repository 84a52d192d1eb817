# Copyright (c) ffl_mm contributors.
from .gated_ensemble_head import GatedEnsembleHead

__all__ = ['GatedEnsembleHead']
