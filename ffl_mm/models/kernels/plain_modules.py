# Copyright (c) ffl_mm contributors.
"""When a hand-written computation may stand in for modules."""
import torch.nn as nn
from torch.nn.modules import module as _module
from torch.nn.utils import parametrize

_GLOBAL_HOOKS = ('_global_forward_hooks', '_global_forward_pre_hooks',
                 '_global_backward_hooks', '_global_backward_pre_hooks')
_MODULE_HOOKS = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks',
                 '_backward_pre_hooks')


def plain_modules(*modules: nn.Module) -> bool:
    """Whether ``modules`` and their children have no hooks (their own or
    global ones) and no re-parametrised weights.

    ffl_mm's fused functions read the modules' parameters and compute
    what the modules would, without calling them. That is the modules'
    result only for plain modules: a hook would not fire, and a weight
    computed from other parameters by a hook or a parametrisation
    (spectral or weight norm) would be stale, its gradient lost.
    """
    if any(getattr(_module, name, None) for name in _GLOBAL_HOOKS):
        return False
    for top in modules:
        for m in top.modules():
            if any(getattr(m, name, None) for name in _MODULE_HOOKS) or \
                    parametrize.is_parametrized(m):
                return False
    return True
