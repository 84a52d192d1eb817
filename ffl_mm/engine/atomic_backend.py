# Copyright (c) ffl_mm contributors.
"""Write local files atomically: a process killed while saving a
checkpoint leaves the previous file intact, never a truncated one."""
import os
import os.path as osp
import re
from pathlib import Path
from typing import List, Union

import mmengine
from mmengine.fileio import LocalBackend


_TEMPORARY = re.compile(r'^\..+\.(\d+)\.tmp$')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str) -> List[str]:
    """Remove the temporary files that :func:`atomic_write` left in
    ``directory`` when its process was killed (SIGKILL skips cleanup).
    Files of processes still alive are kept. Returns the removed paths."""
    removed = []
    if not osp.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = _TEMPORARY.match(name)
        if match and int(match.group(1)) != os.getpid() and \
                not _alive(int(match.group(1))):
            path = osp.join(directory, name)
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to a temporary file next to ``filepath``, flush it to
    disk, then rename it over ``filepath`` (atomic on POSIX and Windows).

    Raises:
        OSError: Of the same kind as the failure (a full disk, no
            permission), naming ``filepath``; nothing is left behind.
    """
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
    except BaseException as exc:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            fix = ''
            if osp.isdir(filepath):
                fix = ('; it is a directory where a file belongs: move it '
                       f'away (mv {filepath} {filepath}.old) and start again')
            # OSError(errno, text) becomes the matching subclass
            raise OSError(exc.errno, f'{exc.strerror}: could not write '
                          f'{filepath!r} (nothing was replaced){fix}') \
                from exc
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


def replace_together(moves: List[tuple]) -> None:
    """Move each ``(staged, destination)`` file into place, all or none: a
    destination that exists is first moved aside (beside its staged file),
    and if any move fails every destination is put back as it was.

    The staged files must lie on the destinations' file system (a folder
    beside them), so that each move is an atomic ``os.replace``.

    Raises:
        OSError: A move failed; the destinations are as before the call.
    """
    for _, destination in moves:
        if osp.isdir(destination):
            raise IsADirectoryError(
                f'{destination} is a directory; remove it or choose another '
                'name (--name) or folder (--out)')
    done = []  # (staged, destination, the file it replaced or None)
    try:
        for staged, destination in moves:
            aside = None
            if osp.lexists(destination):
                aside = staged + '.previous'
                os.replace(destination, aside)
            done.append((staged, destination, aside))
            os.replace(staged, destination)
    except OSError:
        for staged, destination, aside in reversed(done):
            if osp.lexists(destination) and not osp.lexists(staged):
                os.replace(destination, staged)  # back where it was staged
            if aside is not None and osp.lexists(aside):
                os.replace(aside, destination)
        raise
