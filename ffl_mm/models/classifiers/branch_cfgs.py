# Copyright (c) ffl_mm contributors.
"""Checking and splitting a multi-branch classifier's configs per branch."""
import copy
import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch.nn as nn

from ffl_mm.registry import MODELS
from ...utils.arg_checks import real_number

ConfigType = Union[dict, nn.Module]

#: What asking a multi-branch model for ``.backbone`` says.
NO_SINGLE_BACKBONE = (
    "MultiBranchClassifier has no single `backbone` (it has `backbones`, one "
    'per branch). Tools that need `model.backbone` (MMPretrain\'s '
    'vis_cam.py, vis_tsne.py) work on an exported branch: python '
    'tools/export.py CONFIG CHECKPOINT --branch I --out DIR, then run the '
    'tool on DIR\'s config and checkpoint.')


def own_args(cls: type) -> Tuple[str, ...]:
    """The constructor arguments that class ``cls`` itself declares: the
    named parameters of its own ``__init__`` (none if it defines none)."""
    init = cls.__dict__.get('__init__')
    if init is None:
        return ()
    return tuple(
        name for name, p in inspect.signature(init).parameters.items()
        if name != 'self' and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                         p.KEYWORD_ONLY))


def subclasses(cls: type) -> List[type]:
    """Every subclass of ``cls``, at any depth, each once."""
    found = []
    for sub in cls.__subclasses__():
        for c in [sub, *subclasses(sub)]:
            if c not in found:
                found.append(c)
    return found


def method_args(base: type, cls: Optional[type] = None) -> Dict[str, List[str]]:
    """Every argument that a subclass of ``base`` declares (its own
    ``__init__``), with the names of the classes declaring it; with
    ``cls``, only those of ``cls`` and the classes between it and
    ``base``."""
    classes = subclasses(base) if cls is None else [
        c for c in cls.__mro__ if c is not base and issubclass(c, base)]
    args: Dict[str, List[str]] = {}
    for sub in classes:
        for name in own_args(sub):
            args.setdefault(name, []).append(sub.__name__)
    return args


def refuse_method_args(base: type, cls: type, method_args_: dict) -> None:
    """A ``TypeError`` for the arguments that ``cls`` was given and does
    not take (the base passes its unknown keyword arguments here), naming
    the registered classes that declare them (:func:`method_args`). None
    is refused like any other value: drop the key instead."""
    if not method_args_:
        return
    declared = method_args(base)
    name = cls.__name__
    for key, value in method_args_.items():
        owners = declared.get(key)
        if owners:
            use = ' or '.join(f"type='{o}'" for o in owners)
            raise TypeError(
                f'{name} got {key}={value!r}: {key} belongs to '
                f'{" and ".join(owners)}; use {use}, or drop {key} (in a '
                'config that inherits it: model=dict(_delete_=True, ...) '
                'without it).')
    raise TypeError(f'{name} got unexpected argument(s) '
                    f'{sorted(method_args_)}.')


def per_branch(cfg: Union[None, dict, Sequence[dict]], num_branches: int,
               name: str, owner: str) -> List[Optional[dict]]:
    """One config for each branch: a single config is deep-copied."""
    if cfg is None or isinstance(cfg, dict):
        return [copy.deepcopy(cfg) for _ in range(num_branches)]
    cfg = list(cfg)
    if len(cfg) != num_branches:
        raise ValueError(
            f'{owner}: {name} is a list of {len(cfg)} '
            f'configs but there are {num_branches} branches; give one '
            'config (shared) or one per branch.')
    return [copy.deepcopy(c) for c in cfg]


def build(cfg: Optional[ConfigType]) -> Optional[nn.Module]:
    """A module from its config; None and built modules as they are."""
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    return MODELS.build(cfg)


def check_args(owner: str, backbone, num_branches, head) -> int:
    """The number of branches of a multi-branch classifier (class name
    ``owner``, for the messages) with these arguments.

    Raises:
        ValueError: Fewer than 2 branches, a list of backbones that does not
            match ``num_branches``, no head, or a negative loss weight.
    """
    if isinstance(backbone, (list, tuple)):
        if num_branches is not None and num_branches != len(backbone):
            raise ValueError(
                f'{owner}: num_branches={num_branches} '
                f'but {len(backbone)} backbone configs; give one config '
                'per branch or drop num_branches.')
        num_branches = len(backbone)
    elif num_branches is None:
        raise ValueError(
            f'{owner}: set num_branches (>= 2) or give a '
            'list of backbone configs.')
    if isinstance(num_branches, bool) or not isinstance(num_branches, int):
        raise TypeError(
            f'{owner}: num_branches={num_branches!r} '
            f'({type(num_branches).__name__}); give a whole number >= 2, '
            'e.g. model.num_branches=2.')
    if num_branches < 2:
        raise ValueError(
            f'{owner}: num_branches={num_branches!r}; '
            'mutual learning needs at least 2 branches.')
    if head is None:
        raise ValueError(f'{owner}: a branch `head` config '
                         'is required (e.g. LinearClsHead).')
    heads = list(head) if isinstance(head, (list, tuple)) else [head]
    for cfg in heads:
        check_loss_weight(cfg, 'head', owner)
    return num_branches


def check_loss_weight(cfg, where: str, owner: str) -> None:
    """A head config's ``loss.loss_weight`` must be >= 0: a negative weight
    trains against the labels, silently."""
    loss = cfg.get('loss') if isinstance(cfg, dict) else None
    if isinstance(loss, dict) and 'loss_weight' in loss:
        real_number(f'{owner} {where}.loss', 'loss_weight',
                    loss['loss_weight'], 0)


def check_num_classes(owner: str, head_cfgs: Sequence[Optional[dict]],
                      fusion_head: Optional[dict] = None) -> None:
    """Every head must predict the same classes."""
    named = [(f'head of branch {i}', cfg.get('num_classes'))
             for i, cfg in enumerate(head_cfgs) if isinstance(cfg, dict)]
    if isinstance(fusion_head, dict):
        named.append(('fusion_head', fusion_head.get('num_classes')))
    named = [(name, n) for name, n in named if n is not None]
    if len({n for _, n in named}) > 1:
        raise ValueError(
            f'{owner}: every head must predict the same '
            'classes, got ' +
            ', '.join(f'{name}: num_classes={n}' for name, n in named) +
            '; set one num_classes.')


def predict_mode(owner: str, test_cfg: Optional[dict],
                 outputs: Sequence[str], default: str) -> dict:
    """``test_cfg`` with ``predict`` set (``default`` when absent).

    Raises:
        ValueError: A key other than ``predict``, or a ``predict`` that is
            not one of ``outputs``.
    """
    test_cfg = dict(test_cfg or {})
    unknown = set(test_cfg) - {'predict'}
    if unknown:
        raise ValueError(
            f'{owner}: unknown test_cfg key(s) '
            f'{sorted(unknown)}; the only key is predict='
            f"'fused'|'ensemble'|'branch<i>'.")
    test_cfg.setdefault('predict', default)
    if test_cfg['predict'] not in outputs:
        raise ValueError(
            f'{owner}: unknown test_cfg predict='
            f"{test_cfg['predict']!r}; choose one of {list(outputs)}.")
    return test_cfg
