# Copyright (c) ffl_mm contributors.
from .gated_ensemble_head import GatedEnsembleHead
from .peer_attention import PeerAttention

__all__ = ['GatedEnsembleHead', 'PeerAttention']
