# Copyright (c) ffl_mm contributors.
"""One optimizer parameter group per distinct setting.

MMEngine's ``DefaultOptimWrapperConstructor`` gives every parameter a
group of its own as soon as ``paramwise_cfg`` is set (144 groups for FFL
ResNet-32x2, whose settings take two values). ``torch.optim`` optimizers
pay a fixed cost per group at every step, so the groups are merged where
their settings are equal; the update of every parameter is unchanged.
"""
from itertools import chain
from typing import Dict, List, Sequence, Tuple

import torch


def _settings(group: dict) -> dict:
    return {k: v for k, v in group.items() if k != 'params'}


def merge_param_groups(groups: Sequence[dict]) -> List[dict]:
    """Parameter groups merged where every setting but ``params`` is
    equal.

    Args:
        groups (Sequence[dict]): ``torch.optim`` parameter groups (dicts
            with ``params`` and settings such as ``lr``,
            ``weight_decay``).

    Returns:
        list[dict]: New groups, in the order each setting first appears;
        the parameters of a group keep their order of appearance.
    """
    merged: List[Tuple[dict, List]] = []  # (settings, params)
    for group in groups:
        settings = _settings(group)
        params = group['params']
        params = [params] if torch.is_tensor(params) else list(params)
        for known, known_params in merged:
            if known == settings:
                known_params.extend(params)
                break
        else:
            merged.append((settings, params))
    return [dict(settings, params=params) for settings, params in merged]


def regroup_state_dict(state_dict: dict, saved_layout: Sequence[Sequence],
                       groups: Sequence[dict]) -> dict:
    """An optimizer state dict saved with ``saved_layout``'s groups,
    rearranged for ``groups`` (the same parameters, grouped otherwise).

    ``torch.optim`` refers to parameters in a state dict by their position
    in the chain of its groups; the per-parameter state (momentum buffers)
    keyed by those positions is kept, the groups' lists are rebuilt so
    that the positions reach the same parameters.

    Args:
        state_dict (dict): ``Optimizer.state_dict()`` of an optimizer whose
            groups held ``saved_layout``'s parameters.
        saved_layout (Sequence[Sequence[Tensor]]): The parameters of each
            group at saving time.
        groups (Sequence[dict]): The current parameter groups.

    Returns:
        dict: ``state_dict`` unchanged when its groups are not
        ``saved_layout``'s, otherwise a new one for ``groups``; a group
        takes the settings (e.g. the current ``lr``) saved with its first
        parameter.
    """
    saved_groups = state_dict['param_groups']
    if len(saved_groups) != len(saved_layout) or len(saved_groups) == len(
            groups) or any(
                len(s['params']) != len(layout)
                for s, layout in zip(saved_groups, saved_layout)):
        return state_dict
    position: Dict[int, int] = {}
    settings_of: Dict[int, dict] = {}
    for saved, layout in zip(saved_groups, saved_layout):
        for index, param in zip(saved['params'], layout):
            position[id(param)] = index
            settings_of[id(param)] = _settings(saved)
    if any(id(p) not in position
           for p in chain.from_iterable(g['params'] for g in groups)):
        return state_dict
    new_groups = []
    for group in groups:
        first = group['params'][0]
        new_groups.append(
            dict(settings_of[id(first)],
                 params=[position[id(p)] for p in group['params']]))
    return dict(state_dict, param_groups=new_groups)
