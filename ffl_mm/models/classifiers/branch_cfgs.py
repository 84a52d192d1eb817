# Copyright (c) ffl_mm contributors.
"""Checking and splitting a multi-branch classifier's configs per branch."""
import copy
from typing import List, Optional, Sequence, Union

import torch.nn as nn

from ffl_mm.registry import MODELS
from ..utils.arg_checks import real_number

ConfigType = Union[dict, nn.Module]

#: What asking a multi-branch model for ``.backbone`` says.
NO_SINGLE_BACKBONE = (
    "MultiBranchClassifier has no single `backbone` (it has `backbones`, one "
    'per branch). Tools that need `model.backbone` (MMPretrain\'s '
    'vis_cam.py, vis_tsne.py) work on an exported branch: python '
    'tools/export.py CONFIG CHECKPOINT --branch I --out DIR, then run the '
    'tool on DIR\'s config and checkpoint.')


#: Arguments of a method's classifier, and the class that takes them.
METHOD_ARGS = {
    'fusion_neck': 'FFLClassifier',
    'fusion_head': 'FFLClassifier',
    'fusion_pre_neck': 'FFLClassifier',
    'fusion_pre_neck_with_cp': 'FFLClassifier',
    'heads_on_enhanced': 'FFLClassifier',
    'ensemble_head': 'ONEClassifier',
    'branch_update': 'DMLClassifier',
    'grad_rescale': 'CLILRClassifier',
    'peer_attention': 'OKDDipClassifier',
}


def refuse_method_args(name: str, method_args: dict) -> None:
    """A ``TypeError`` for arguments that class ``name`` does not take,
    naming the class that does; None for a method's argument is ignored (a
    config that nulls what it inherited)."""
    wrong = {k: v for k, v in method_args.items()
             if not (k in METHOD_ARGS and v is None)}
    for key in wrong:
        if key in METHOD_ARGS:
            raise TypeError(
                f'{name} got {key}={wrong[key]!r}: {key} belongs to '
                f"{METHOD_ARGS[key]}; use type='{METHOD_ARGS[key]}' (or drop "
                f'{key}).')
    if wrong:
        raise TypeError(f'{name} got unexpected argument(s) '
                        f'{sorted(wrong)}.')


def per_branch(cfg: Union[None, dict, Sequence[dict]], num_branches: int,
               name: str) -> List[Optional[dict]]:
    """One config for each branch: a single config is deep-copied."""
    if cfg is None or isinstance(cfg, dict):
        return [copy.deepcopy(cfg) for _ in range(num_branches)]
    cfg = list(cfg)
    if len(cfg) != num_branches:
        raise ValueError(
            f'MultiBranchClassifier: {name} is a list of {len(cfg)} '
            f'configs but there are {num_branches} branches; give one '
            'config (shared) or one per branch.')
    return [copy.deepcopy(c) for c in cfg]


def build(cfg: Optional[ConfigType]) -> Optional[nn.Module]:
    """A module from its config; None and built modules as they are."""
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    return MODELS.build(cfg)


def check_args(backbone, num_branches, head) -> int:
    """The number of branches of a multi-branch classifier with these
    arguments.

    Raises:
        ValueError: Fewer than 2 branches, a list of backbones that does not
            match ``num_branches``, no head, or a negative loss weight.
    """
    if isinstance(backbone, (list, tuple)):
        if num_branches is not None and num_branches != len(backbone):
            raise ValueError(
                f'MultiBranchClassifier: num_branches={num_branches} '
                f'but {len(backbone)} backbone configs; give one config '
                'per branch or drop num_branches.')
        num_branches = len(backbone)
    elif num_branches is None:
        raise ValueError(
            'MultiBranchClassifier: set num_branches (>= 2) or give a '
            'list of backbone configs.')
    if isinstance(num_branches, bool) or not isinstance(num_branches, int):
        raise TypeError(
            f'MultiBranchClassifier: num_branches={num_branches!r} '
            f'({type(num_branches).__name__}); give a whole number >= 2, '
            'e.g. model.num_branches=2.')
    if num_branches < 2:
        raise ValueError(
            f'MultiBranchClassifier: num_branches={num_branches!r}; '
            'mutual learning needs at least 2 branches.')
    if head is None:
        raise ValueError('MultiBranchClassifier: a branch `head` config '
                         'is required (e.g. LinearClsHead).')
    heads = list(head) if isinstance(head, (list, tuple)) else [head]
    for cfg in heads:
        check_loss_weight(cfg, 'head')
    return num_branches


def check_loss_weight(cfg, where: str) -> None:
    """A head config's ``loss.loss_weight`` must be >= 0: a negative weight
    trains against the labels, silently."""
    loss = cfg.get('loss') if isinstance(cfg, dict) else None
    if isinstance(loss, dict) and 'loss_weight' in loss:
        real_number(f'MultiBranchClassifier {where}.loss', 'loss_weight',
                    loss['loss_weight'], 0)


def check_num_classes(head_cfgs: Sequence[Optional[dict]],
                      fusion_head: Optional[dict] = None) -> None:
    """Every head must predict the same classes."""
    named = [(f'head of branch {i}', cfg.get('num_classes'))
             for i, cfg in enumerate(head_cfgs) if isinstance(cfg, dict)]
    if isinstance(fusion_head, dict):
        named.append(('fusion_head', fusion_head.get('num_classes')))
    named = [(name, n) for name, n in named if n is not None]
    if len({n for _, n in named}) > 1:
        raise ValueError(
            'MultiBranchClassifier: every head must predict the same '
            'classes, got ' +
            ', '.join(f'{name}: num_classes={n}' for name, n in named) +
            '; set one num_classes.')


def predict_mode(test_cfg: Optional[dict], outputs: Sequence[str],
                 default: str) -> dict:
    """``test_cfg`` with ``predict`` set (``default`` when absent).

    Raises:
        ValueError: A key other than ``predict``, or a ``predict`` that is
            not one of ``outputs``.
    """
    test_cfg = dict(test_cfg or {})
    unknown = set(test_cfg) - {'predict'}
    if unknown:
        raise ValueError(
            f'MultiBranchClassifier: unknown test_cfg key(s) '
            f'{sorted(unknown)}; the only key is predict='
            f"'fused'|'ensemble'|'branch<i>'.")
    test_cfg.setdefault('predict', default)
    if test_cfg['predict'] not in outputs:
        raise ValueError(
            f'MultiBranchClassifier: unknown test_cfg predict='
            f"{test_cfg['predict']!r}; choose one of {list(outputs)}.")
    return test_cfg
