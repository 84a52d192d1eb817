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
from ...utils.arg_checks import real_number
from .merged_groups_constructor import MergedGroupsOptimWrapperConstructor


def check_optimizer_settings(optimizer_cfg: dict) -> None:
    """``lr``, ``weight_decay`` and ``momentum`` of an optimizer config are
    numbers in their range, or an error naming the option: a string
    (``lr=abc``) fails deep in ``torch.optim`` with a type error, an lr that
    overflows float32 at the first step, and a momentum >= 1 (``5`` for
    ``0.5``) trains, diverging, without a word.

    Raises:
        TypeError, ValueError: Naming ``optim_wrapper.optimizer.<key>``.
    """
    where = 'optim_wrapper.optimizer'
    if 'lr' in optimizer_cfg:
        lr = real_number(where, 'lr', optimizer_cfg['lr'], 0)
        if lr > 1e30:
            raise ValueError(f'{where}: lr={lr!r} overflows float32 in the '
                             'update; give a learning rate such as 0.1.')
    if 'weight_decay' in optimizer_cfg:
        real_number(where, 'weight_decay', optimizer_cfg['weight_decay'], 0)
    if 'momentum' in optimizer_cfg:
        momentum = real_number(where, 'momentum', optimizer_cfg['momentum'],
                               0)
        if momentum >= 1:
            raise ValueError(
                f'{where}: momentum={momentum!r} must be below 1 (0.9 is '
                'usual): a momentum of 1 or more makes every step larger '
                'than the last.')


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
    refuses a ``paramwise_cfg.custom_keys`` entry matching no parameter, and
    an ``lr``, ``weight_decay`` or ``momentum`` out of range
    (:func:`check_optimizer_settings`).

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
        check_optimizer_settings(self.optimizer_cfg)
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
