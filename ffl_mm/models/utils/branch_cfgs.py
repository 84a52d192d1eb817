# Copyright (c) ffl_mm contributors.
"""Checking and splitting a multi-branch classifier's configs per branch."""
import copy
from typing import List, Optional, Sequence, Union

import torch.nn as nn

from ffl_mm.registry import MODELS
from .arg_checks import real_number

ConfigType = Union[dict, nn.Module]

#: What asking a multi-branch model for ``.backbone`` says.
NO_SINGLE_BACKBONE = (
    "MultiBranchClassifier has no single `backbone` (it has `backbones`, one "
    'per branch). Tools that need `model.backbone` (MMPretrain\'s '
    'vis_cam.py, vis_tsne.py) work on an exported branch: python '
    'tools/export.py CONFIG CHECKPOINT --branch I --out DIR, then run the '
    'tool on DIR\'s config and checkpoint.')


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


def check_args(backbone, num_branches, head, fusion_neck, fusion_head,
               distill_loss, fusion_pre_neck, heads_on_enhanced,
               with_cp) -> int:
    """The number of branches of a ``MultiBranchClassifier`` with these
    arguments.

    Raises:
        ValueError: Fewer than 2 branches, or arguments that do not go
            together (e.g. ``distill_loss`` without a fusion neck).
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
    if not isinstance(num_branches, int) or num_branches < 2:
        raise ValueError(
            f'MultiBranchClassifier: num_branches={num_branches!r}; '
            'mutual learning needs at least 2 branches.')
    if head is None:
        raise ValueError('MultiBranchClassifier: a branch `head` config '
                         'is required (e.g. LinearClsHead).')
    if (fusion_neck is None) != (fusion_head is None):
        raise ValueError(
            'MultiBranchClassifier: fusion_neck and fusion_head go '
            'together; give both (FFL/MFEF) or neither (cross-entropy '
            'only).')
    if fusion_pre_neck is not None and fusion_neck is None:
        raise ValueError('MultiBranchClassifier: fusion_pre_neck '
                         'enhances maps for the fusion neck; add '
                         'fusion_neck and fusion_head.')
    if fusion_pre_neck is None and heads_on_enhanced:
        raise ValueError('MultiBranchClassifier: heads_on_enhanced=True '
                         'needs fusion_pre_neck.')
    if fusion_pre_neck is None and with_cp:
        raise ValueError('MultiBranchClassifier: '
                         'fusion_pre_neck_with_cp=True needs '
                         'fusion_pre_neck (there is nothing to '
                         'recompute).')
    heads = list(head) if isinstance(head, (list, tuple)) else [head]
    for where, cfg in [*(('head', h) for h in heads),
                       ('fusion_head', fusion_head)]:
        loss = cfg.get('loss') if isinstance(cfg, dict) else None
        if isinstance(loss, dict) and 'loss_weight' in loss:
            # a negative weight trains against the labels, silently
            real_number(f'MultiBranchClassifier {where}.loss',
                        'loss_weight', loss['loss_weight'], 0)
    return num_branches


BRANCH_UPDATES = ('together', 'one_by_one')


def check_branch_update(branch_update: str, shared_stages: int,
                        with_fusion: bool, with_ensemble_head: bool) -> str:
    """``branch_update`` if it goes with the model, else a ValueError."""
    if branch_update not in BRANCH_UPDATES:
        raise ValueError(
            f'MultiBranchClassifier: branch_update={branch_update!r}; '
            f'choose one of {list(BRANCH_UPDATES)}.')
    if branch_update == 'one_by_one' and (shared_stages or with_fusion or
                                          with_ensemble_head):
        raise ValueError(
            "MultiBranchClassifier: branch_update='one_by_one' updates "
            'independent networks in turn (DML); it cannot go with '
            'shared_stages, a fusion module or an ensemble head, whose '
            "parameters serve every branch. Use branch_update='together'.")
    return branch_update


def check_num_classes(head_cfgs: Sequence[Optional[dict]],
                      fusion_head: Optional[dict]) -> None:
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
