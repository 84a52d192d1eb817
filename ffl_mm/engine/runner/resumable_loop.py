# Copyright (c) ffl_mm contributors.
"""MMEngine's epoch-based training loop, able to continue in the middle of
an epoch."""
import logging
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from ffl_mm.registry import LOOPS


def rng_state() -> dict:
    """The random state of this process: Python's, NumPy's global, torch's
    CPU generator and, with CUDA, every device's generator.

    NumPy's key array is kept as a torch tensor, so that the state loads
    with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back a state of :func:`rng_state`."""
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` (same arguments) that resumes mid-epoch.

    MMEngine's loop always starts an epoch at its first batch: a checkpoint
    saved in the middle of an epoch (``SafeCheckpointHook`` saves one when
    the run gets SIGTERM) would train that epoch's first batches twice.
    After :meth:`continue_epoch_after`, the next epoch this loop runs draws
    its first ``batches`` batches from the data loader without training on
    them (so that the sampler, the data workers and the augmentations go
    through the same random draws as the interrupted run), puts back the
    random state the interrupted run had after its last step, and trains
    from the next batch: the weights end bit-identical to those of a run
    that was never interrupted (tested for 1 and 2 processes).

    Skipping costs the data loading of the skipped batches (no forward or
    backward pass). ``SafeRunner`` uses this loop wherever a config asks
    for an epoch-based loop (``train_cfg=dict(by_epoch=True, ...)``).
    """

    _skip: Optional[int] = None
    _rng: Optional[dict] = None

    def continue_epoch_after(self, batches: int,
                             rng: Optional[dict] = None) -> None:
        """Make the next epoch start after its first ``batches`` batches.

        Args:
            batches (int): Batches of the epoch already trained on.
            rng (dict, optional): :func:`rng_state` after the last of them;
                None keeps the state the skipping leaves.
        """
        self._skip, self._rng = int(batches), rng

    def run_epoch(self) -> None:
        """Iterate one epoch (the rest of it, after
        :meth:`continue_epoch_after`)."""
        skip, rng = self._skip or 0, self._rng
        self._skip = self._rng = None
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader):
            if idx < skip:
                if idx + 1 == skip and rng is not None:
                    set_rng_state(rng)
                continue
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


def gather_rank_states(model) -> List[dict]:
    """What each rank holds of its own at a mid-epoch stop, in rank order:
    its random state (:func:`rng_state`) and its floating buffers (BN
    statistics: MMEngine's DDP does not broadcast buffers, so they differ
    between ranks until ``SyncBuffersHook`` averages them at the epoch's
    end). A collective: every rank calls it."""
    module = getattr(model, 'module', model)
    state = dict(rng=rng_state(), buffers={
        name: buffer.detach().cpu().clone()
        for name, buffer in module.named_buffers()
        if buffer.is_floating_point()})
    if get_world_size() == 1:
        return [state]
    return all_gather_object(state)


def continue_mid_epoch(runner, state: Optional[dict]) -> bool:
    """Make a resumed run continue after the batches that ``state`` (the
    ``ffl_mm_resume`` entry of a mid-epoch checkpoint's meta) says were
    trained, with this rank's random state and buffers of the moment it
    stopped.

    Returns:
        bool: Whether ``state`` described a mid-epoch stop.
    """
    if not isinstance(state, dict) or not state.get('batches_done'):
        return False
    batches, ranks = int(state['batches_done']), state.get('ranks') or []
    loop = runner.train_loop
    if not isinstance(loop, ResumableEpochBasedTrainLoop):
        print_log(
            f'The checkpoint was saved in the middle of an epoch (after '
            f'{batches} batches), but the training loop '
            f'({type(loop).__name__}) restarts epochs at their first batch: '
            f'those {batches} batches are trained twice. Build the runner '
            'with RUNNERS.build(cfg) and runner_type=\'SafeRunner\' '
            '(ffl_mm\'s default runtime does) to continue at the next '
            'batch.', logger='current', level=logging.WARNING)
        return True
    mine = None
    if len(ranks) == get_world_size():
        mine = ranks[get_rank()]
        module = getattr(runner.model, 'module', runner.model)
        own = dict(module.named_buffers())
        for name, value in mine['buffers'].items():
            if name in own:
                own[name].copy_(value)
    else:
        print_log(
            f'The checkpoint was saved by {len(ranks)} processes, this run '
            f'has {get_world_size()}: it continues after batch {batches} '
            'of the epoch, but with other random draws and buffers than the '
            'interrupted run would have had.', logger='current',
            level=logging.WARNING)
    loop.continue_epoch_after(batches, mine['rng'] if mine else None)
    print_log(f'Continuing epoch {runner.epoch + 1} after its first '
              f'{batches} batches (saved mid-epoch); the skipped batches are '
              'read, not trained on.', logger='current')
    return True
