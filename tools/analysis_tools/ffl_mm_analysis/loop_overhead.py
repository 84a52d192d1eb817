# Copyright (c) ffl_mm contributors.
"""What MMEngine's ``Runner`` adds to a training step of a model.

The configured model is trained by a real ``Runner`` (its train loop, the
config's default and custom hooks, logging, the parameter schedulers and a
data loader) on copies of one synthetic batch. After every Runner
iteration, a hook of the lowest priority runs one step of a plain PyTorch
loop on an identical twin model with the same batch: the hand-written
step of :mod:`.reference_step` (normalised float batch, direct module
calls, the loss written out) where it covers the model, else a bare loop
of the model's own preprocessor and ``forward(mode='loss')``. The two
alternate (runner, plain, runner, plain, ...), so the noise of a shared
machine hits both alike. A Runner iteration is timed from the end of the
previous bare step to the start of the next one: it covers fetching the
batch, every ``before_train_iter`` / ``after_train_iter`` hook and
``model.train_step`` with its optim wrapper.
"""
import copy
import tempfile
import time
from typing import Callable, List, Optional

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.device import get_device
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

from ffl_mm.registry import MODELS
from ffl_mm.apis.model_cfg import runner_model_cfg
from .reference_step import ReferenceStep, reference_unsupported


class RepeatedBatch(Dataset):
    """``length`` copies of one already collated batch."""

    def __init__(self, batch: dict, length: int):
        self.batch = batch
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


def _first(items):
    return items[0]


def _synchronised_clock() -> float:
    """Seconds, once the CUDA device has finished its queued work."""
    torch.cuda.synchronize()
    return time.perf_counter()


def bare_train_step(model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, data: dict) -> None:
    """One step of a plain PyTorch training loop on ``model``."""
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    loss = sum(value for name, value in losses.items() if 'loss' in name)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class InterleavedBareLoopHook(Hook):
    """Times the Runner's iterations and, after each, a bare-loop step.

    Args:
        bare_step (callable): Runs one bare step on a data batch.
        warmup (int): Untimed iterations at the start.
        clock (callable): Seconds.
    """

    priority = 'LOWEST'

    def __init__(self, bare_step: Callable[[dict], None], warmup: int,
                 clock: Callable[[], float] = time.perf_counter):
        self.bare_step = bare_step
        self.warmup = warmup
        self.clock = clock
        self.runner_times: List[float] = []
        self.bare_times: List[float] = []
        self._mark: Optional[float] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        now = self.clock()
        if self._mark is not None and batch_idx >= self.warmup:
            self.runner_times.append(now - self._mark)
        start = self.clock()
        self.bare_step(data_batch)
        end = self.clock()
        if batch_idx >= self.warmup:
            self.bare_times.append(end - start)
        self._mark = self.clock()


def runner_vs_bare_loop(cfg: Config, data: dict, iters: int,
                        warmup: int = 2) -> dict:
    """Step times of the Runner and of a bare loop on the same model/batch.

    Args:
        cfg (Config): A training config; its model, optim wrapper, param
            schedulers, default/custom hooks, log processor and
            environment settings are used, its data sets are not.
        data (dict): One collated batch (``inputs``, ``data_samples``).
        iters (int): Timed iterations.
        warmup (int): Untimed iterations first (at least 1).

    Both models live on the device MMEngine picks (``get_device()``: CUDA
    when there is one); on CUDA the clock waits for the device.

    Returns:
        dict: ``runner`` and ``bare`` step times in seconds (lists), and
        ``bare_kind``: ``'hand_written'`` (:class:`ReferenceStep`) or
        ``'bare'`` (:func:`bare_train_step`, for models it does not
        cover).
    """
    warmup = max(1, warmup)
    model_cfg = runner_model_cfg(cfg)
    bare_model = MODELS.build(copy.deepcopy(model_cfg))
    bare_model.init_weights()
    bare_model.to(get_device()).train()
    if reference_unsupported(bare_model) is None:
        reference = ReferenceStep(bare_model, cfg.optim_wrapper, data)
        bare_kind = 'hand_written'

        def bare_step(batch):
            reference.step()
    else:
        optimizer = build_optim_wrapper(
            bare_model, copy.deepcopy(cfg.optim_wrapper)).optimizer
        bare_kind = 'bare'

        def bare_step(batch):
            bare_train_step(bare_model, optimizer, batch)

    hook = InterleavedBareLoopHook(
        bare_step, warmup,
        _synchronised_clock if get_device() == 'cuda' else time.perf_counter)
    loader = DataLoader(
        RepeatedBatch(data, warmup + iters), batch_size=1,
        collate_fn=_first)
    with tempfile.TemporaryDirectory() as work_dir:
        runner = Runner(
            model=model_cfg,
            work_dir=work_dir,
            train_dataloader=loader,
            train_cfg=dict(by_epoch=True, max_epochs=1),
            optim_wrapper=copy.deepcopy(cfg.optim_wrapper),
            param_scheduler=copy.deepcopy(cfg.get('param_scheduler')),
            default_hooks=copy.deepcopy(cfg.get('default_hooks')),
            custom_hooks=copy.deepcopy(cfg.get('custom_hooks')),
            env_cfg=copy.deepcopy(cfg.get('env_cfg', dict())),
            log_processor=copy.deepcopy(cfg.get('log_processor')),
            default_scope=cfg.get('default_scope', 'mmpretrain'),
            log_level='WARNING',
            experiment_name=f'loop_overhead_{time.time_ns()}')
        runner.register_hook(hook)
        runner.train()
    return dict(runner=hook.runner_times, bare=hook.bare_times,
                bare_kind=bare_kind)
