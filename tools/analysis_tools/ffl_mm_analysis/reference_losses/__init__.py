# Copyright (c) ffl_mm contributors.
"""The benchmark's hand-written training losses, one module per method
beside this file.

Each module writes out the loss of the classifier classes it registers
with :func:`register` (exactly those classes: a subclass computes
something else until it registers its own). A method with no module here
is benchmarked without the hand-written reference variant, and the report
says why; adding one is adding a file, nothing else.

A registered loss is ``loss(model, x, labels, kd_weight) -> Tensor``
(``x`` the normalised batch, ``labels`` ``(B, )``, ``kd_weight`` the
ramp-up weight or None for the model's current one). It may carry
``unsupported(model) -> Optional[str]`` (why a configuration of the class
is not written out) and ``step(reference) -> Tensor`` (a step other than
one backward and one optimizer step: DML's one-by-one update).
"""
import importlib
import pkgutil
from typing import Callable, Dict, Optional

_LOSSES: Dict[str, Callable] = {}
_LOADED = []


def register(*class_names: str) -> Callable:
    """Register the decorated function as the hand-written loss of the
    classifier classes ``class_names``."""

    def decorate(fn: Callable) -> Callable:
        for name in class_names:
            if name in _LOSSES:
                raise KeyError(f'{name} has a hand-written loss already '
                               f'({_LOSSES[name].__module__}).')
            _LOSSES[name] = fn
        return fn

    return decorate


def lookup(class_name: str) -> Optional[Callable]:
    """The hand-written loss of ``class_name``, or None."""
    if not _LOADED:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f'{__name__}.{module.name}')
        _LOADED.append(True)
    return _LOSSES.get(class_name)
