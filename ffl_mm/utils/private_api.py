# Copyright (c) ffl_mm contributors.
"""Every private name of another library that ffl_mm reads or writes, in
one place.

Each was written against the versions in :data:`WRITTEN_FOR`. Class
attributes are checked when this module is imported; attributes that a
library sets on its instances are checked by :func:`check_instances` (a
unit test of ``make test`` runs it) and by each accessor when it is used.
A missing name is a :class:`PrivateAPIError` that names it, the version it
was written for and the installed one: an upstream rename stops ffl_mm
instead of changing what it does. No other ffl_mm module reads a private
name of another library (``tests/test_layering.py``).
"""
import inspect
from importlib.metadata import version
from typing import Any, Callable, Dict, List, Tuple

from mmengine.hooks import CheckpointHook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModule
from mmengine.optim import OptimWrapper
from mmengine.registry import Registry
from mmengine.runner import Runner
from mmpretrain.models.heads import ClsHead
from mmpretrain.models.tta import AverageClsScoreTTA
from mmpretrain.models.utils import ClsDataPreprocessor

#: the versions each private name below was read from
WRITTEN_FOR = {'mmengine': '0.10.7', 'mmpretrain': '1.2.0', 'numpy': '2.4.6'}


class PrivateAPIError(AttributeError):
    """A private name ffl_mm relies on is gone from the installed
    library."""


def _error(library: str, owner: str, name: str) -> PrivateAPIError:
    return PrivateAPIError(
        f'ffl_mm reads {owner}.{name}, a private name of {library} '
        f'{WRITTEN_FOR[library]}; the installed {library} {version(library)} '
        f'has none. Install {library}=={WRITTEN_FOR[library]} (the pinned '
        'set: requirements/constraints.txt) or port ffl_mm/utils/'
        'private_api.py.')


def _require(owner: Any, name: str, library: str) -> None:
    if not hasattr(owner, name):
        raise _error(library, getattr(owner, '__name__', str(owner)), name)


def _get(obj: Any, name: str, library: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise _error(library, type(obj).__name__, name) from None


# class attributes and methods: checked now
_CLASS_NAMES: List[Tuple[Any, str, str]] = [
    (HistoryBuffer, '_statistics_methods', 'mmengine'),
    (CheckpointHook, '_save_best_checkpoint', 'mmengine'),
    (ClsHead, '_get_loss', 'mmpretrain'),
    (AverageClsScoreTTA, '_merge_single_sample', 'mmpretrain'),
]
for _owner, _name, _library in _CLASS_NAMES:
    _require(_owner, _name, _library)


# attributes a library sets in ``__init__``: (class, attribute, library)
_INSTANCE_NAMES: List[Tuple[type, str, str]] = [
    (Runner, '_resume', 'mmengine'),
    (Runner, '_has_loaded', 'mmengine'),
    (Runner, '_load_from', 'mmengine'),
    (OptimWrapper, '_accumulative_counts', 'mmengine'),
    (ClsDataPreprocessor, '_enable_normalize', 'mmpretrain'),
    (Registry, '_locations', 'mmengine'),
]


def check_instances() -> Dict[str, bool]:
    """Whether each class's ``__init__`` still sets the private attribute
    ffl_mm reads, ``{'Class._name': found}`` (a unit test asserts all)."""
    found = {}
    for cls, name, _ in _INSTANCE_NAMES:
        source = inspect.getsource(cls.__init__)
        found[f'{cls.__name__}.{name}'] = f'self.{name} =' in source
    # records_init_info: set by init_weights, not __init__
    found['BaseModule._params_init_info'] = '_params_init_info' in \
        inspect.getsource(BaseModule.init_weights)
    return found


def runner_resume(runner: Runner) -> bool:
    """Whether the run was asked to resume (``resume=True``)."""
    return bool(_get(runner, '_resume', 'mmengine'))


def runner_has_loaded(runner: Runner) -> bool:
    """Whether the Runner has loaded or resumed its checkpoint already."""
    return bool(_get(runner, '_has_loaded', 'mmengine'))


def runner_load_from(runner: Runner):
    """The checkpoint the Runner will load or resume from (None: the
    latest in the work dir, with ``resume``)."""
    return _get(runner, '_load_from', 'mmengine')


def set_runner_load_from(runner: Runner, path: str) -> None:
    """Make the Runner resume from ``path``."""
    _get(runner, '_load_from', 'mmengine')
    runner._load_from = path


def accumulative_counts(optim_wrapper: OptimWrapper) -> int:
    """The optimizer wrapper's gradient accumulation
    (``accumulative_counts``)."""
    return _get(optim_wrapper, '_accumulative_counts', 'mmengine')


def normalizes(preprocessor: ClsDataPreprocessor) -> bool:
    """Whether MMPretrain's preprocessor normalises (mean and std set)."""
    return bool(_get(preprocessor, '_enable_normalize', 'mmpretrain'))


def registry_locations(registry: Registry) -> List[str]:
    """The modules a registry imports to find its components."""
    return list(_get(registry, '_locations', 'mmengine'))


def records_init_info(module) -> bool:
    """Whether MMEngine's ``BaseModule.init_weights`` is recording which
    initialiser set each parameter (``_params_init_info``, which MMEngine's
    own initialisers test for before ``update_init_info``)."""
    return hasattr(module, '_params_init_info')


def history_buffer_statistics() -> Dict[str, Callable]:
    """MMEngine's table of ``HistoryBuffer`` statistics methods (what a
    checkpoint's message hub may name)."""
    return HistoryBuffer._statistics_methods


def head_loss(head: ClsHead, logits, data_samples) -> Dict[str, Any]:
    """A ``ClsHead``'s loss dict on logits already computed
    (``ClsHead._get_loss``)."""
    return head._get_loss(logits, data_samples)


def numpy_reconstruct() -> Tuple[Callable, Callable]:
    """numpy's array and scalar rebuild functions (what pickled arrays
    name), from ``numpy._core.multiarray``."""
    from numpy._core import multiarray
    _require(multiarray, '_reconstruct', 'numpy')
    return multiarray._reconstruct, multiarray.scalar
