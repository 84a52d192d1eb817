# Copyright (c) ffl_mm contributors.
"""Write local files atomically: a process killed while saving a
checkpoint leaves the previous file intact, never a truncated one."""
import os
import os.path as osp
from pathlib import Path
from typing import Union

import mmengine
from mmengine.fileio import LocalBackend


def atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to a temporary file next to ``filepath``, flush it to
    disk, then rename it over ``filepath`` (atomic on POSIX and Windows)."""
    filepath = str(filepath)
    directory = osp.dirname(osp.abspath(filepath))
    mmengine.mkdir_or_exist(directory)
    # a hidden name in the same directory (same file system: rename is
    # atomic), created like open() does (permissions follow the umask)
    tmp = osp.join(directory, f'.{osp.basename(filepath)}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` with atomic ``put``/``put_text``. Once
    :mod:`ffl_mm.engine.compat` has made it the backend of local paths,
    ``save_checkpoint`` and the ``last_checkpoint`` pointer are written
    write-then-rename."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), filepath)
