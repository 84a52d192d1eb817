# Copyright (c) ffl_mm contributors.
"""Random streams that depend only on (seed, epoch), for exact resumes."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from ffl_mm.registry import HOOKS


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded with ``seed``:
    distinct per epoch, within numpy's 32-bit range."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**32)


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Seed Python, NumPy and torch (CPU and CUDA) at the start of every
    training epoch from the run's seed and the epoch.

    MMEngine's ``--resume`` restores weights, optimizer, schedulers and the
    message hub, and re-seeds from the *initial* seed, so a resumed run draws
    other random crops/flips than the uninterrupted one would have. With
    this hook the random streams of epoch e are the same whether the run
    went through in one go or was killed and resumed, and whatever
    happened between epochs (validation, checkpointing) draws no difference.
    Together with MMPretrain's ``DefaultSampler`` (shuffled by seed +
    epoch) a resumed run reproduces the uninterrupted one exactly on the
    CPU with ``num_workers=0`` (tested); data workers seed themselves from
    the config seed as in MMEngine.

    Args:
        seed (int, optional): Overrides the run's seed (``runner.seed``,
            which MMEngine draws at random when the config sets none and
            stores in every checkpoint).
    """

    priority = 'VERY_HIGH'

    def __init__(self, seed=None):
        self.seed = seed

    def before_train_epoch(self, runner) -> None:
        base = self.seed if self.seed is not None else runner.seed
        if base is None:
            return
        value = epoch_seed(base, runner.epoch)
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)  # seeds every CUDA device too
