# Copyright (c) ffl_mm contributors.
from .resumable_loop import (ResumableEpochBasedTrainLoop, gather_rng_states,
                             rng_state, set_rng_state)
from .safe_runner import SafeRunner

__all__ = ['ResumableEpochBasedTrainLoop', 'SafeRunner', 'gather_rng_states',
           'rng_state', 'set_rng_state']
