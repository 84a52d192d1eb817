# Copyright (c) ffl_mm contributors.
"""Activation checkpointing that updates normalisation statistics once,
whole or selective (PyTorch's own ``torch.utils.checkpoint``)."""
import contextlib
import functools
from typing import Callable, Optional, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

#: the values of a ``with_cp`` switch: keep everything, recompute the
#: element-wise passes only, recompute everything
WITH_CP = (False, 'selective', True)

# the operators whose results the selective policy keeps: convolutions
# and matrix products, the costly passes. Normalisation is recomputed
# from the kept convolution result (the same batch statistics; the
# running ones are restored, see ``buffers_kept``), as are the
# element-wise passes, pooling and concatenation: keeping a
# normalisation's result as well would keep as much as the plain modules
_KEPT_OPS = frozenset(
    getattr(torch.ops.aten, name).default
    for name in ('convolution', 'mm', 'addmm', 'bmm')
    if hasattr(torch.ops.aten, name))


def check_with_cp(value: Union[bool, str], owner: str) -> Union[bool, str]:
    """``value`` if it is one of :data:`WITH_CP`, else a ``ValueError``
    naming ``owner`` (the argument, e.g. ``'FFLFusionNeck: with_cp'``)."""
    if value is not True and value is not False and value != 'selective':
        raise ValueError(
            f'{owner}={value!r}: use False (keep the activations), '
            "'selective' (recompute the element-wise passes in backward) "
            'or True (recompute everything in backward).')
    return value


def keep_costly_results(ctx, op, *args, **kwargs) -> cp.CheckpointPolicy:
    """The selective policy: keep convolution and matrix-product results;
    recompute the rest in backward."""
    if op in _KEPT_OPS:
        return cp.CheckpointPolicy.MUST_SAVE
    return cp.CheckpointPolicy.PREFER_RECOMPUTE


def out_of_place_activations(module: nn.Module) -> nn.Module:
    """Set ``inplace=False`` on ``module``'s layers that have the switch
    (``nn.ReLU``, ``nn.LeakyReLU``, ...; same values) and return it.

    For the selective policy: a result it keeps (a convolution's) must
    not be overwritten later in the region, which an in-place activation
    right after a convolution would do. Inside a recomputed region the
    activation's output is not kept either way, so this costs no memory.
    """
    for layer in module.modules():
        if isinstance(getattr(layer, 'inplace', None), bool):
            layer.inplace = False
    return module


class buffers_kept:
    """Restore every buffer of ``module`` when the block ends.

    Used around the recomputation in backward: a BatchNorm layer in
    training mode would otherwise move its running statistics (and
    ``num_batches_tracked``) a second time for the same batch. Reusable:
    a graph kept for a second backward pass recomputes again.
    """

    def __init__(self, module: nn.Module, then=None):
        self.module = module
        self.then = then  # a context entered inside this one
        self.saved = []

    def __enter__(self):
        self.saved = [(buf, buf.detach().clone())
                      for buf in self.module.buffers()]
        if self.then is not None:
            self.then.__enter__()

    def __exit__(self, *exc):
        try:
            if self.then is not None:
                self.then.__exit__(*exc)
        finally:
            with torch.no_grad():
                for buf, value in self.saved:
                    buf.copy_(value)
            self.saved = []
        return False


def _contexts(module: nn.Module, selective: bool):
    if not selective:
        return contextlib.nullcontext(), buffers_kept(module)
    forward, recompute = cp.create_selective_checkpoint_contexts(
        keep_costly_results)
    # the buffers are saved outside the recomputation (whose dispatch
    # mode would take the copy for an operator of the region)
    return forward, buffers_kept(module, then=recompute)


def recompute_in_backward(module: nn.Module,
                          *inputs: torch.Tensor,
                          selective: bool = False,
                          fn: Optional[Callable] = None) -> torch.Tensor:
    """``module(*inputs)`` (or ``fn(*inputs)``), recomputing its
    activations in backward.

    PyTorch's non-reentrant activation checkpointing: the forward pass
    keeps the inputs and, with ``selective``, the results of the costly
    operators (:func:`keep_costly_results`); backward runs the module
    again for the rest (same RNG state, same autocast state). Unlike a
    plain checkpoint (MMPretrain's ``with_cp``), the rerun leaves buffers
    as the forward pass left them, so BatchNorm running statistics move
    once per step and the trained weights and statistics equal those of
    the plain forward. Without gradients (evaluation, ``no_grad``) it is
    the plain call.

    Args:
        module (nn.Module): Maps ``inputs`` to a tensor (or tensors);
            its buffers are the ones kept.
        *inputs (Tensor): What ``module`` takes.
        selective (bool): Keep the convolution results (recompute only
            the cheap passes). Defaults to False: recompute everything.
            The module must not overwrite a convolution's result in place
            (see :func:`out_of_place_activations`).
        fn (Callable, optional): What to run instead of ``module``: a
            computation of ``module``'s parameters and buffers only (e.g.
            one of its methods).

    Returns:
        Tensor: ``module(*inputs)``.
    """
    fn = module if fn is None else fn
    if not torch.is_grad_enabled() or not (
            any(x.requires_grad for x in inputs)
            or any(p.requires_grad for p in module.parameters())):
        return fn(*inputs)
    if torch.compiler.is_compiling():
        # the compiler recomputes values only: the graph's buffer updates
        # (running statistics) run once, in its forward pass, and its
        # checkpoint takes only the selective policy's dispatch modes
        kwargs = dict(context_fn=functools.partial(
            cp.create_selective_checkpoint_contexts,
            keep_costly_results)) if selective else {}
        return cp.checkpoint(fn, *inputs, use_reentrant=False, **kwargs)
    return cp.checkpoint(
        fn,
        *inputs,
        use_reentrant=False,
        context_fn=functools.partial(_contexts, module, selective))


def apply_with_cp(module: nn.Module,
                  with_cp: Union[bool, str],
                  *inputs: torch.Tensor,
                  fn: Optional[Callable] = None) -> torch.Tensor:
    """``module(*inputs)`` (or ``fn(*inputs)``) under a ``with_cp``
    switch (:data:`WITH_CP`)."""
    if with_cp is False:
        return (module if fn is None else fn)(*inputs)
    return recompute_in_backward(
        module, *inputs, selective=with_cp == 'selective', fn=fn)
