# Copyright (c) ffl_mm contributors.
"""One read of each CIFAR file for every check ffl_mm runs on it."""
import os
import pickle
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np


class CifarFile(NamedTuple):
    """What a CIFAR pickle holds, without its pixels.

    Attributes:
        data_shape (tuple[int]): Shape of its ``data`` array.
        num_labels (int, optional): Length of ``labels`` (CIFAR-10) or
            ``fine_labels`` (CIFAR-100); None where it has neither.
    """
    data_shape: Tuple[int, ...]
    num_labels: Optional[int]


class CifarFileError(ValueError):
    """A CIFAR file that cannot be unpickled."""


_READ: Dict[Tuple[str, int, int], CifarFile] = {}


def read_cifar_file(path: str) -> CifarFile:
    """The :class:`CifarFile` of ``path``, unpickled once per process
    while the file is unchanged (its size and modification time): the
    tools' checks, the Runner's and the data-set hook's share it.

    Raises:
        CifarFileError: The file cannot be unpickled, naming it.
    """
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _READ:
        try:
            with open(path, 'rb') as f:
                entry = pickle.load(f, encoding='latin1')
        except Exception as err:  # UnpicklingError, EOFError, ...
            raise CifarFileError(
                f'{path} ({stat.st_size} bytes) cannot be read as a CIFAR '
                f'file ({type(err).__name__}: {err}).') from err
        labels = entry.get('labels', entry.get('fine_labels')) \
            if isinstance(entry, dict) else None
        data = np.asarray(entry.get('data')) if isinstance(entry, dict) \
            else np.asarray(None)
        _READ[key] = CifarFile(tuple(data.shape),
                               None if labels is None else len(labels))
    return _READ[key]
