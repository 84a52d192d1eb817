# Copyright (c) ffl_mm contributors.
"""Distributed runs that also start without CUDA (gloo on the CPU) and end
cleanly. Used by ffl_mm's tools; not imported by ``import ffl_mm``."""
import datetime
import gc
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Record the launcher in ``cfg``; on a machine without CUDA, start the
    process group with gloo first.

    With CUDA (or ``launcher='none'``) nothing else changes: the Runner calls
    MMEngine's ``init_dist`` with ``env_cfg.dist_cfg`` (NCCL by default),
    exactly as in MMPretrain. Without CUDA, ``init_dist('pytorch')`` would
    crash in ``torch.cuda.set_device``, so this function initialises the
    ``gloo`` process group from the ``torchrun`` environment itself (the
    Runner then sees an initialised group and skips ``init_dist``), and
    makes the DDP wrapper keep the model on the CPU (``device_ids=None``).

    Args:
        cfg (Config): The config; ``cfg.launcher`` and, on CPU,
            ``cfg.model_wrapper_cfg`` are set in place.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Raises:
        ValueError: A launcher other than ``'pytorch'`` without CUDA, or
            a ``dist_cfg.backend`` that cannot run on the CPU.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ValueError(
            f'--launcher {launcher} needs CUDA, which this machine lacks. '
            'Use tools/dist_train.sh (torchrun, --launcher pytorch) for CPU '
            'runs.')
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend not in ('nccl', 'gloo'):
        raise ValueError(f'env_cfg.dist_cfg.backend={backend!r} cannot run '
                         "on the CPU; use 'gloo'.")
    # the work dir's copy of the config says what runs
    cfg.setdefault('env_cfg', ConfigDict()).setdefault(
        'dist_cfg', ConfigDict())['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout', None)
        kwargs = {}
        if timeout is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)
        print_log(
            f'No CUDA: initialised the gloo process group (rank '
            f'{torch_dist.get_rank()}/{torch_dist.get_world_size()}).',
            logger='current')
    wrapper = cfg.get('model_wrapper_cfg', None) or ConfigDict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def close_distributed() -> None:
    """Leave the process group at the end of a finished run.

    MMEngine never destroys the group it starts. With gloo on the CPU the
    group's worker threads may then still be joinable when the interpreter
    exits, and the C++ runtime may abort the process ("terminate called
    without an active exception", SIGABRT) after every checkpoint and log
    has been written (see docs/changelog.md). A barrier (every rank is
    done), the garbage the finished run left (the tools drop their Runner,
    whose DDP wrapper holds the group, before calling this) and
    ``destroy_process_group`` join them first. A no-op outside
    distributed runs. Not called when a run fails: a barrier then could
    wait for a dead rank.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        # what still holds the group (a model wrapper's reducer, in cycles
        # with the rest of a finished Runner) goes before the group does:
        # a group alive at interpreter exit tears its threads down there
        gc.collect()
        torch_dist.destroy_process_group()
        gc.collect()
