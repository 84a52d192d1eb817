# Copyright (c) ffl_mm contributors.
"""An optimizer-wrapper constructor that refuses ``paramwise_cfg.custom_keys``
entries matching no parameter (on top of the merged parameter groups)."""
import difflib
import logging
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_CONSTRUCTORS
from mmpretrain.models import BaseClassifier

from ffl_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS
from .merged_groups_constructor import MergedGroupsOptimWrapperConstructor


def unmatched_custom_keys(custom_keys, model: nn.Module) -> List[str]:
    """The keys of ``custom_keys`` that no parameter name of ``model``
    contains (MMEngine matches a key as a substring of
    ``'{module path}.{parameter}'``; a top-level parameter reads
    ``'.{parameter}'``)."""
    names = ['.' + name for name, _ in model.named_parameters()]
    return [key for key in custom_keys
            if not any(key in name for name in names)]


def _module_names(model: nn.Module) -> List[str]:
    """Every dotted module path and its last part, for suggestions."""
    found = set()
    for path, _ in model.named_modules():
        if path:
            found.update((path, path.rsplit('.', 1)[-1]))
    return sorted(found)


# Also in MMEngine's root node (see merged_groups_constructor.py).
@MMENGINE_CONSTRUCTORS.register_module(name='CheckedOptimWrapperConstructor')
@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CheckedOptimWrapperConstructor(MergedGroupsOptimWrapperConstructor):
    """:class:`MergedGroupsOptimWrapperConstructor` (MMEngine's default
    constructor, same arguments, groups of equal settings merged) that
    refuses a ``paramwise_cfg.custom_keys`` entry matching no parameter.

    MMEngine applies a custom key to every parameter whose name contains
    it and ignores a key that matches none, so a typo (``fusion_nek``)
    silently trains the fusion module with the network's weight decay.
    ffl_mm's schedules set ``constructor='CheckedOptimWrapperConstructor'``;
    a config that defines its own ``optim_wrapper`` without it keeps
    MMEngine's behaviour (MMPretrain's own schedules list keys, such as
    Swin's ``.absolute_pos_embed``, that not every model has).

    The keys are checked on MMPretrain classifiers, what ffl_mm's configs
    build. A tool that builds a config's schedule around another model
    (MMPretrain's ``vis_scheduler.py`` uses a one-convolution stand-in)
    gets MMEngine's behaviour and a warning naming the keys.

    Raises:
        ValueError: Naming every unmatched key and the closest module
            names, when the wrapper is built for a classifier.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        inner = getattr(model, 'module', model)  # DDP
        custom_keys = (self.paramwise_cfg or {}).get('custom_keys', {})
        unmatched = unmatched_custom_keys(custom_keys, inner)
        if unmatched and not isinstance(inner, BaseClassifier):
            print_log(
                f'optim_wrapper.paramwise_cfg.custom_keys {unmatched} match '
                f'no parameter of {type(inner).__name__} (not a classifier: '
                'not checked; MMEngine ignores them).',
                logger='current', level=logging.WARNING)
        elif unmatched:
            modules = _module_names(inner)
            hints = []
            for key in unmatched:
                close = difflib.get_close_matches(key, modules, n=3)
                hints.append(f'{key!r} (closest module names: '
                             f'{", ".join(close) or "none"})')
            raise ValueError(
                f'optim_wrapper.paramwise_cfg.custom_keys: '
                f'{"; ".join(hints)} match no parameter of '
                f'{type(inner).__name__}, so their settings would be '
                'ignored. Fix the name or remove the key.')
        return super().__call__(model)
