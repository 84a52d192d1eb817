# Copyright (c) ffl_mm contributors.
from .resumable_loop import (ResumableEpochBasedTrainLoop, continue_mid_epoch,
                             gather_rank_states, rng_state, set_rng_state)
from .safe_runner import SafeRunner

__all__ = [
    'ResumableEpochBasedTrainLoop', 'SafeRunner', 'continue_mid_epoch',
    'gather_rank_states', 'rng_state', 'set_rng_state'
]
