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
* ``builtins.getattr`` replaced by a stand-in that only returns
  ``HistoryBuffer``'s statistics methods registered in this process before
  the load began (``min``, ``max``, ``mean``, ``current`` and any the code
  registered) and refuses everything else. The weights-only unpickler never
  calls what ``getattr`` returns unless it is itself allow-listed, so these
  methods are stored, not run.

A checkpoint never changes the process: MMEngine's
``HistoryBuffer.__setstate__`` copies a file's statistics table into the
class-wide one, so the table is restored after every load, and a file whose
table differs from the process's (a new name, or ``mean`` bound to ``max``)
is refused as unsafe. Before unpickling, the CRC-32 that torch's zip format
stores for every record (and torch never checks) is verified, and member
names that point outside the archive are refused.

Anything else that would run code, for example a pickle that calls
``os.system``, is refused before it runs, with
:class:`UnsafeCheckpointError` naming the file and the offending globals. A
damaged, truncated or foreign file gives :class:`CheckpointLoadError`
naming the file and what is wrong.

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
import tarfile
import zipfile
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..utils.private_api import history_buffer_statistics, numpy_reconstruct

#: Statistics methods of ``HistoryBuffer`` that MMEngine itself registers.
_HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'mean', 'current'})


class CheckpointLoadError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, not a
    checkpoint)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle would call code outside the allow-list."""


def _history_buffer_getattr(allowed: frozenset) -> Callable:
    """Stand-in for ``builtins.getattr`` during checkpoint unpickling.

    Pickle protocol 2 stores ``HistoryBuffer.min`` as
    ``getattr(HistoryBuffer, 'min')``. Only that form is answered, for the
    names in ``allowed`` (fixed before the load: a file cannot add to it).

    Raises:
        pickle.UnpicklingError: For any other object or attribute name.
    """

    def stand_in(obj: Any, name: str) -> Callable:
        if obj is HistoryBuffer and name in allowed and \
                callable(getattr(HistoryBuffer, name, None)):
            return getattr(HistoryBuffer, name)
        raise pickle.UnpicklingError(
            f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint; '
            'only HistoryBuffer statistics methods are.')

    return stand_in


def _numpy_reconstruct_paths() -> List[Tuple[Any, str]]:
    """numpy's array/scalar rebuild functions under their numpy 1 and 2
    module paths, so checkpoints written with either numpy load."""
    reconstruct, scalar = numpy_reconstruct()
    items = []
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        items.append((reconstruct, f'{module}._reconstruct'))
        items.append((scalar, f'{module}.scalar'))
    return items


def _mmengine_globals(
        allowed: frozenset) -> List[Union[Any, Tuple[Any, str]]]:
    """Everything an MMEngine/MMPretrain checkpoint needs beyond tensors;
    ``getattr`` answers the statistics names in ``allowed``."""
    dtype_classes = [getattr(np.dtypes, name) for name in np.dtypes.__all__]
    return [
        HistoryBuffer,
        (_history_buffer_getattr(allowed), 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        *dtype_classes,
        *_numpy_reconstruct_paths(),
        collections.OrderedDict,
        collections.Counter,
        collections.defaultdict,
    ]


def _unsafe_globals(filename: str, allowed: frozenset) -> List[str]:
    """The globals in ``filename`` that the allow-list does not cover."""
    try:
        with torch.serialization.safe_globals(_mmengine_globals(allowed)):
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
    _check_archive(filename)
    table = history_buffer_statistics()
    # what the table holds once any HistoryBuffer exists: MMEngine's four,
    # then whatever the code registered (a fresh process may have none yet)
    expected = {name: getattr(HistoryBuffer, name)
                for name in sorted(_HISTORY_BUFFER_METHODS)}
    expected.update(table)
    try:
        checkpoint = _load(filename, map_location, frozenset(expected))
    finally:
        changed = _restore(table, expected)
    if changed:
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {filename!r}: it would change '
            f'HistoryBuffer statistics of this process ({", ".join(changed)})'
            ', which MMEngine/MMPretrain/ffl_mm checkpoints never do. The '
            'process is unchanged.')
    return checkpoint


def _restore(table: dict, expected: dict) -> List[str]:
    """Put the class-wide statistics table back and say what a load had
    changed. ``expected`` is the table before the load plus MMEngine's own
    four, which a loaded HistoryBuffer adds to a fresh process's empty
    table (``__setstate__`` only adds and rebinds, never removes)."""
    changed = [
        f'{name!r} -> {getattr(method, "__name__", method)}'
        for name, method in table.items() if expected.get(name) is not method
    ]
    kept = {name: expected[name] for name in table if name in expected}
    table.clear()
    table.update(kept)
    return changed


def _check_archive(filename: str) -> None:
    """Verify a zip-format checkpoint's CRC-32 per record and its member
    names before anything is unpickled. Other files pass through (torch's
    legacy format has no checksum)."""
    if not zipfile.is_zipfile(filename):
        return
    try:
        with zipfile.ZipFile(filename) as archive:
            for info in archive.infolist():
                name = info.filename
                if name.startswith('/') or '..' in name.split('/'):
                    raise CheckpointLoadError(
                        f'Refused checkpoint {filename!r}: its zip member '
                        f'{name!r} points outside the archive, which torch '
                        'never writes. It is not a checkpoint of a run; '
                        'use another file.')
            bad = archive.testzip()
    except CheckpointLoadError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _damaged(filename, exc) from exc
    if bad is not None:
        raise CheckpointLoadError(
            f'Checkpoint {filename!r} is damaged: record {bad!r} does not '
            'match the CRC-32 stored when it was written (a bit flip on '
            'disk or in transfer). Its weights would be wrong; use an '
            'earlier checkpoint of the run.')


def _load(filename: str, map_location: Optional[Any],
          allowed: frozenset) -> Any:
    """``torch.load`` with the allow-list; errors as this module's."""
    try:
        with torch.serialization.safe_globals(_mmengine_globals(allowed)):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = (
            _unsafe_globals(filename, allowed)
            or re.findall(r'GLOBAL ([\w.]+)', str(exc))
            or re.findall(r'(getattr\(.*?\)) is not allowed', str(exc))
            or _foreign_globals(filename))
        if not unsafe:  # not a refusal: the file itself is broken
            raise _damaged(filename, exc) from exc
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {filename!r}: its pickle calls '
            f'{", ".join(unsafe)}, '
            'which could run arbitrary code. Nothing in it was executed. '
            'Checkpoints written by MMEngine/MMPretrain/ffl_mm do not need '
            'this; ask whoever made the file for one saved with '
            'torch.save of plain tensors.') from None
    except RuntimeError as exc:
        if 'CUDA' in str(exc) and 'weights_only' not in str(exc):
            raise  # a CUDA tensor without CUDA: torch's message is right
        raise _damaged(filename, exc) from exc
    except (EOFError, ValueError, OSError, IndexError, KeyError,
            TypeError, AttributeError, tarfile.TarError) as exc:
        raise _damaged(filename, exc) from exc


#: Modules whose globals a checkpoint may name (torch's own loader decides
#: which of them it accepts); a global from any other module is reported as
#: code the file would run.
_CHECKPOINT_MODULES = ('torch', 'collections', 'numpy', 'mmengine', '_codecs')


def _foreign_globals(filename: str) -> List[str]:
    """Globals outside :data:`_CHECKPOINT_MODULES` that a plain (non-zip)
    pickle names, read without running it (``pickletools``). torch's
    weights-only reader stops at pickle protocol 4 framing before it sees
    them, so its message cannot tell a code-running file from a broken
    one."""
    import io
    import pickletools
    if zipfile.is_zipfile(filename):
        return []
    found = []
    with open(filename, 'rb') as f:
        stream = io.BytesIO(f.read())
    strings: List[str] = []
    try:
        while stream.tell() < len(stream.getbuffer()):
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name == 'GLOBAL':
                    found.append(arg.replace(' ', '.'))
                elif opcode.name == 'STACK_GLOBAL' and len(strings) >= 2:
                    found.append(f'{strings[-2]}.{strings[-1]}')
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # the rest is not a pickle: judge what was read
        pass
    return sorted({g for g in found
                   if g.split('.')[0] not in _CHECKPOINT_MODULES})


#: Fragments of torch's messages for a truncated or foreign file.
_DAMAGE_HINTS = ('zip archive', 'invalid load key', 'unexpected EOF',
                 'file not found', 'Ran out of input', 'magic number',
                 'truncated')


def _damaged(filename: str, exc: BaseException) -> CheckpointLoadError:
    """The error for a checkpoint file that cannot be parsed."""
    # torch's own text advises turning its safety off: never repeated;
    # keep only what its unpickler found
    text = str(exc)
    found = re.search(r'WeightsUnpickler error:\s*(.*?)\s*(Check the|$)',
                      text, re.S)
    reason = found.group(1) if found else text.split('\n')[0]
    if 'weights_only' in reason:
        reason = ''
    return CheckpointLoadError(
        f'Cannot read checkpoint {filename!r} ({osp.getsize(filename)} '
        f'bytes): {type(exc).__name__}'
        f'{": " + reason if reason else ""}. '
        f'{_what_it_is(filename, reason)}')


def _what_it_is(filename: str, reason: str = '') -> str:
    """What a file that is not a readable checkpoint appears to be, and
    what to do."""
    if 'storage' in reason:
        return ('A tensor in it does not fit the storage the file gives it: '
                'the file was damaged or crafted. Use an earlier checkpoint '
                'of the run.')
    if zipfile.is_zipfile(filename):
        try:
            with zipfile.ZipFile(filename) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if any(n.endswith('constants.pkl') or '/code/' in n for n in names):
            return ('It is a TorchScript archive (torch.jit.save), not a '
                    'checkpoint: load it with torch.jit.load, or use the '
                    'checkpoint of the run that produced it.')
    elif tarfile.is_tarfile(filename):
        return ('It is a tar archive (PyTorch\'s pre-1.6 legacy format, or '
                'another archive): load it with the PyTorch that wrote it and '
                'save it again with torch.save, or use another file.')
    return ('The file is truncated or not a PyTorch checkpoint (for '
            'example, the process died while writing it). Use an earlier '
            'checkpoint of the run.')
