# Copyright (c) ffl_mm contributors.
from .epoch_seed_hook import EpochSeedHook, epoch_seed
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError

__all__ = ['EpochSeedHook', 'FiniteLossHook', 'NonFiniteLossError',
           'epoch_seed']
