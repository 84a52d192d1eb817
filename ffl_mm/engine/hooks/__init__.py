# Copyright (c) ffl_mm contributors.
from .epoch_seed_hook import EpochSeedHook, epoch_seed
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .safe_checkpoint_hook import NonFiniteWeightsError, SafeCheckpointHook

__all__ = ['EpochSeedHook', 'FiniteLossHook', 'NonFiniteLossError',
           'NonFiniteWeightsError', 'SafeCheckpointHook', 'epoch_seed']
