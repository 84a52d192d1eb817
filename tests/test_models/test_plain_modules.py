# Copyright (c) ffl_mm contributors.
"""When the fused functions may read modules' parameters instead of
calling them."""
import torch.nn as nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import parametrizations

from ffl_mm.models.kernels.plain_modules import plain_modules


def _block():
    return nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU())


def test_plain_modules():
    assert plain_modules(_block(), _block())


def test_a_hook_on_any_child_or_a_global_hook():
    for register in ('register_forward_hook', 'register_forward_pre_hook',
                     'register_full_backward_hook'):
        block = _block()
        args = (lambda *a: None, )
        handle = getattr(block[1], register)(*args)
        assert not plain_modules(_block(), block), register
        handle.remove()
        assert plain_modules(_block(), block), register
    handle = torch_module.register_module_forward_hook(lambda *a: None)
    try:
        assert not plain_modules(_block())
    finally:
        handle.remove()
    assert plain_modules(_block())


def test_a_parametrised_weight():
    block = _block()
    parametrizations.weight_norm(block[0])
    assert not plain_modules(block)
    assert not plain_modules(block[0])
    assert plain_modules(block[1])
