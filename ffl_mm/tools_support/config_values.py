# Copyright (c) ffl_mm contributors.
"""Values of a run's config checked before anything is built.

MMEngine reads these deep inside the Runner: ``train_cfg.max_epochs='abc'``
fails in ``int()`` after the model and the data are built, ``0`` or ``-1``
in a parameter scheduler, ``randomness.seed='abc'`` in numpy, and a data
set's ``indices=0`` in ``np.concatenate`` ("need at least one array to
concatenate"). :func:`check_config_values` names the option and the fix
first. (The optimizer's own values are checked where it is built, in the
run: ``check_optimizer_settings`` in :mod:`.optimizers.checked_constructor`.)
"""
import numbers
from typing import Optional

from .data_checks import DATALOADER_KEYS, dataset_cfgs


def _whole(value, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and \
        not isinstance(value, bool) and value >= minimum


def _problem(cfg) -> Optional[str]:
    train_cfg = cfg.get('train_cfg') or {}
    for key, example in (('max_epochs', 300), ('max_iters', 10000),
                         ('val_interval', 1)):
        if key in train_cfg and not _whole(train_cfg[key], 1):
            return (f'train_cfg.{key}={train_cfg[key]!r}: give a whole '
                    f'number >= 1, e.g. --cfg-options train_cfg.{key}='
                    f'{example}.')
    seed = (cfg.get('randomness') or {}).get('seed')
    if seed is not None and not _whole(seed, 0):
        return (f'randomness.seed={seed!r}: give a whole number >= 0 (or '
                'leave it out for a random seed), e.g. --cfg-options '
                'randomness.seed=0.')
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if isinstance(loader, dict) and 'batch_size' in loader and \
                not _whole(loader['batch_size'], 1):
            return (f'{key}.batch_size={loader["batch_size"]!r}: give a '
                    'whole number >= 1.')
    for where, dataset in dataset_cfgs(cfg):
        indices = dataset.get('indices')
        if indices is None:
            continue
        if isinstance(indices, (list, tuple)):
            if not indices or not all(_whole(i, 0) for i in indices):
                return (f'{where}.indices={indices!r}: give the number of '
                        'samples to use (>= 1) or a non-empty list of sample '
                        'indices.')
        elif not _whole(indices, 1):
            return (f'{where}.indices={indices!r}: give the number of '
                    'samples to use (>= 1), a non-empty list of sample '
                    'indices, or leave it out for the whole data set.')
    return None


def check_config_values(cfg) -> None:
    """Raise a ``ValueError`` naming the first option of ``cfg`` whose value
    the Runner would fail on late or cryptically (see the module
    docstring)."""
    problem = _problem(cfg)
    if problem:
        raise ValueError(problem)
