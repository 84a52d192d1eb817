# Copyright (c) ffl_mm contributors.
"""MMEngine's default optimizer-wrapper constructor, refusing
``paramwise_cfg.custom_keys`` entries that match no parameter and merging
parameter groups of equal settings."""
import difflib
import logging
from typing import List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_CONSTRUCTORS
from mmpretrain.models import BaseClassifier

from ffl_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS
from .param_groups import merge_param_groups, regroup_state_dict


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


# Also in MMEngine's root node, as TorchDefault: ``build_optim_wrapper``
# outside a Runner often runs without a scope, and MMEngine's root node
# cannot reach a grandchild such as ``ffl_mm.CheckedOptimWrapperConstructor``.
@MMENGINE_CONSTRUCTORS.register_module(name='CheckedOptimWrapperConstructor')
@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CheckedOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` (same arguments) that refuses a
    ``paramwise_cfg.custom_keys`` entry matching no parameter.

    MMEngine applies a custom key to every parameter whose name contains
    it and ignores a key that matches none, so a typo (``fusion_nek``)
    silently trains the fusion module with the network's weight decay.
    ffl_mm's schedules set ``constructor='CheckedOptimWrapperConstructor'``;
    a config that defines its own ``optim_wrapper`` without it keeps
    MMEngine's behaviour (MMPretrain's own schedules list keys, such as
    Swin's ``.absolute_pos_embed``, that not every model has).

    With ``paramwise_cfg``, MMEngine's constructor makes one group per
    parameter; ``torch.optim`` pays a fixed cost per group and step, so
    groups of equal settings are merged (:func:`merge_param_groups`; every
    parameter's update is the same). An optimizer state saved with one
    group per parameter (a checkpoint written before the merge) still
    loads: a load hook regroups it (:func:`regroup_state_dict`).

    The keys are checked on MMPretrain classifiers, what ffl_mm's configs
    build. A tool that builds a config's schedule around another model
    (MMPretrain's ``vis_scheduler.py`` uses a one-convolution stand-in)
    gets MMEngine's behaviour and a warning naming the keys.

    Raises:
        ValueError: Naming every unmatched key and the closest module
            names, when the wrapper is built for a classifier.
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module: Optional[bool] = None) -> None:
        """MMEngine's per-parameter groups, merged at the top level."""
        if prefix:
            return super().add_params(params, module, prefix, is_dcn_module)
        per_param: List[dict] = []
        super().add_params(per_param, module, prefix, is_dcn_module)
        self._per_param_layout = [list(g['params']) for g in per_param]
        params.extend(merge_param_groups(per_param))

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
        self._per_param_layout = None
        optim_wrapper = super().__call__(model)
        layout = self._per_param_layout
        if layout is not None:
            optimizer = optim_wrapper.optimizer
            optimizer.register_load_state_dict_pre_hook(
                lambda opt, state: regroup_state_dict(
                    state, layout, opt.param_groups))
        return optim_wrapper
