# Copyright (c) ffl_mm contributors.
"""Safe loading of local checkpoints under torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True``. An MMEngine training
checkpoint pickles more than tensors: the message hub's ``HistoryBuffer``
objects (with numpy arrays and, through ``builtins.getattr``, the buffer's
statistics methods), numpy scalars and the ``collections.Counter`` of a
``MultiStepLR``. Plain ``torch.load`` therefore refuses every checkpoint
that ``--resume`` or ``tools/test.py`` gets.

This module keeps pickle safety on and allows exactly those objects, only
while a checkpoint is being read:

* the classes and rebuild functions listed in :func:`_mmengine_globals`;
* ``builtins.getattr`` replaced by :func:`_history_buffer_getattr`, which
  only returns ``HistoryBuffer``'s statistics methods (``min``, ``max``,
  ``mean``, ``current`` and registered ones) and refuses everything else.
  The weights-only unpickler never calls what ``getattr`` returns unless it
  is itself allow-listed, so these methods are stored, not run.

Anything else, for example a pickle that would call ``os.system``, is
refused before it runs, with :class:`UnsafeCheckpointError` naming the file
and the offending globals. A truncated or otherwise unreadable file gives
:class:`CheckpointLoadError`.

Importing :mod:`ffl_mm.engine.compat` (ffl_mm's configs and tools do)
registers :func:`load_from_safe_local` as MMEngine's loader for local paths
(``CheckpointLoader`` prefix ``''``), so ``--resume``, ``load_from``,
``tools/test.py`` and ``init_cfg`` pretrained weights all go through it.
``import ffl_mm`` alone leaves MMEngine's loader as it is.
"""
import collections
import os.path as osp
import pickle
import re
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

#: Statistics methods of ``HistoryBuffer`` that MMEngine itself registers.
_HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'mean', 'current'})


class CheckpointLoadError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, not a
    checkpoint)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle would call code outside the allow-list."""


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` during checkpoint unpickling.

    Pickle protocol 2 stores ``HistoryBuffer.min`` as
    ``getattr(HistoryBuffer, 'min')``. Only that form is answered.

    Raises:
        pickle.UnpicklingError: For any other object or attribute name.
    """
    allowed = _HISTORY_BUFFER_METHODS | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint; only '
        'HistoryBuffer statistics methods are.')


def _numpy_reconstruct_paths() -> List[Tuple[Any, str]]:
    """numpy's array/scalar rebuild functions under their numpy 1 and 2
    module paths, so checkpoints written with either numpy load."""
    from numpy._core import multiarray
    items = []
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        items.append((multiarray._reconstruct, f'{module}._reconstruct'))
        items.append((multiarray.scalar, f'{module}.scalar'))
    return items


def _mmengine_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """Everything an MMEngine/MMPretrain checkpoint needs beyond tensors."""
    dtype_classes = [getattr(np.dtypes, name) for name in np.dtypes.__all__]
    return [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        *dtype_classes,
        *_numpy_reconstruct_paths(),
        collections.OrderedDict,
        collections.Counter,
        collections.defaultdict,
    ]


def _unsafe_globals(filename: str) -> List[str]:
    """The globals in ``filename`` that the allow-list does not cover."""
    try:
        with torch.serialization.safe_globals(_mmengine_globals()):
            return torch.serialization.get_unsafe_globals_in_checkpoint(
                filename)
    except Exception:  # an unreadable file: the caller's message suffices
        return []


def load_from_safe_local(filename: str,
                           map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint with ``weights_only=True`` and the MMEngine
    allow-list.

    It has the signature of MMEngine's ``load_from_local`` and replaces it.

    Args:
        filename (str): Path of the checkpoint (``~`` is expanded).
        map_location: As for :func:`torch.load`.

    Returns:
        The unpickled checkpoint (usually a dict with ``state_dict``,
        ``meta``, ``optimizer``, ``message_hub``, ... or a bare state dict).

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        UnsafeCheckpointError: The pickle would call something outside the
            allow-list. Nothing in it is run.
        CheckpointLoadError: The file is truncated or not a checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint {filename!r} does not exist.')
    try:
        with torch.serialization.safe_globals(_mmengine_globals()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = (
            _unsafe_globals(filename)
            or re.findall(r'GLOBAL ([\w.]+)', str(exc))
            or re.findall(r'(getattr\(.*?\)) is not allowed', str(exc)))
        if not unsafe:  # not a refusal: the file itself is broken
            raise _damaged(filename, exc) from exc
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {filename!r}: its pickle calls '
            f'{", ".join(unsafe)}, '
            'which could run arbitrary code. Nothing in it was executed. '
            'Checkpoints written by MMEngine/MMPretrain/ffl_mm do not need '
            'this. If you trust the file and where it came from, convert it '
            'once to plain weights, e.g. python -c "import torch; ckpt = '
            "torch.load('IN.pth', weights_only=False); torch.save("
            "{'state_dict': ckpt['state_dict']}, 'OUT.pth')\", and use "
            'OUT.pth.') from None
    except RuntimeError as exc:
        if not any(hint in str(exc) for hint in _DAMAGE_HINTS):
            raise  # e.g. a CUDA tensor without CUDA: torch's message is right
        raise _damaged(filename, exc) from exc
    except (EOFError, ValueError, OSError, IndexError, KeyError) as exc:
        raise _damaged(filename, exc) from exc


#: Fragments of torch's messages for a truncated or foreign file.
_DAMAGE_HINTS = ('zip archive', 'invalid load key', 'unexpected EOF',
                 'file not found', 'Ran out of input', 'magic number',
                 'truncated')


def _damaged(filename: str, exc: BaseException) -> CheckpointLoadError:
    """The error for a checkpoint file that cannot be parsed."""
    return CheckpointLoadError(
        f'Cannot read checkpoint {filename!r} ({osp.getsize(filename)} '
        f'bytes): {type(exc).__name__}: {exc}. The file is truncated or not '
        'a PyTorch checkpoint (for example, the process died while writing '
        'it). Use an earlier checkpoint of the run.')
