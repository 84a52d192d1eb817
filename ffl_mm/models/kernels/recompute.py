# Copyright (c) ffl_mm contributors.
"""Activation checkpointing that updates normalisation statistics once."""
import contextlib
import functools
from typing import Iterator

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp


@contextlib.contextmanager
def buffers_kept(module: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``module`` when the block ends.

    Used around the recomputation in backward: a BatchNorm layer in
    training mode would otherwise move its running statistics (and
    ``num_batches_tracked``) a second time for the same batch.
    """
    saved = [(buf, buf.detach().clone()) for buf in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _contexts(module: nn.Module):
    return contextlib.nullcontext(), buffers_kept(module)


def recompute_in_backward(module: nn.Module,
                          x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, keeping only ``x`` for backward.

    PyTorch's non-reentrant activation checkpointing: the forward pass
    saves no intermediate tensors of ``module`` and backward runs it again
    (same RNG state, same autocast state). Unlike a plain checkpoint
    (MMPretrain's ``with_cp``), the rerun leaves buffers as the forward
    pass left them, so BatchNorm running statistics move once per step and
    the trained weights and statistics equal those of the plain forward.
    Without gradients (evaluation, ``no_grad``) it is the plain call.

    Args:
        module (nn.Module): Maps ``x`` to one tensor.
        x (Tensor): The input, any shape ``module`` takes.

    Returns:
        Tensor: ``module(x)``.
    """
    if not torch.is_grad_enabled() or not (
            x.requires_grad or any(p.requires_grad
                                   for p in module.parameters())):
        return module(x)
    return cp.checkpoint(
        module,
        x,
        use_reentrant=False,
        context_fn=functools.partial(_contexts, module))
