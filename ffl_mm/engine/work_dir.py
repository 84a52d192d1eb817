# Copyright (c) ffl_mm contributors.
"""A work dir that one run owns: a lock against a second run there (taken by
``SafeRunner`` when it starts, under any tool), and the config copy put back
when a start fails."""
import contextlib
import os
import os.path as osp
from typing import Iterator, Optional

from mmengine.config import Config


#: The open lock files of this process, by path: ``[file, holders]`` (a
#: tool and the runner it builds may both take the lock).
_WORK_DIR_LOCKS = {}


LOCK_NAME = '.ffl_mm.lock'


def process_rank() -> int:
    """This process's rank before the process group exists: ``RANK``
    (torchrun, MMEngine's pytorch launcher), else ``SLURM_PROCID`` (one
    ``srun`` task per process, MMEngine's slurm launcher), else 0."""
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', 0)))


def lock_work_dir(work_dir: str) -> Optional[str]:
    """Hold an exclusive lock on ``work_dir`` until as many
    :func:`release_work_dir` calls, :func:`unlock_work_dirs` or the end of
    this process, so that a second run there stops at once instead of
    mixing its log and checkpoints with this one's. Only rank 0 of a
    distributed run locks (:func:`process_rank`); taking a lock this
    process holds already counts one more holder.

    The lock is ``flock`` on ``<work_dir>/.ffl_mm.lock``, which the system
    releases when the holder exits however it ends: a lock file left by a
    dead process is taken over (the returned message says so). A no-op
    where ``fcntl`` does not exist (Windows).

    Raises:
        SystemExit: Another live process holds the work dir; names it.

    Returns:
        str | None: A message when a dead process's lock was taken over.
    """
    if process_rank() != 0:
        return None
    try:
        import fcntl
    except ImportError:
        return None
    os.makedirs(work_dir, exist_ok=True)
    path = osp.abspath(osp.join(work_dir, LOCK_NAME))
    if path in _WORK_DIR_LOCKS:
        _WORK_DIR_LOCKS[path][1] += 1
        return None
    handle = open(path, 'a+')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or 'unknown'
        handle.close()
        raise SystemExit(
            f'work dir {work_dir} is in use by another run (process '
            f'{holder}, lock {path}). Wait for it to end, stop it, or use '
            'another --work-dir.') from None
    handle.seek(0)
    previous = handle.read().strip()
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _WORK_DIR_LOCKS[path] = [handle, 1]
    if previous and previous != str(os.getpid()):
        return (f'took over the lock of work dir {work_dir} left by process '
                f'{previous}, which is no longer running')
    return None


def release_work_dir(work_dir: str) -> None:
    """Give back one hold of :func:`lock_work_dir` on ``work_dir``; the
    last one releases the lock (the lock file is emptied)."""
    path = osp.abspath(osp.join(work_dir, LOCK_NAME))
    entry = _WORK_DIR_LOCKS.get(path)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _WORK_DIR_LOCKS[path]
        _close(entry[0])


def _close(handle) -> None:
    handle.seek(0)
    handle.truncate()
    handle.close()  # closing the file releases its flock


def unlock_work_dirs() -> None:
    """Release the work-dir locks this process holds (a finished or failed
    run, still alive to say so): the lock file is emptied, so that the next
    run there (or in a copy of the work dir) finds no holder to take over
    from; only a process that died holding it leaves its id behind."""
    while _WORK_DIR_LOCKS:
        _, (handle, _) = _WORK_DIR_LOCKS.popitem()
        _close(handle)


@contextlib.contextmanager
def config_copy_kept_on_failure(cfg: Config) -> Iterator[None]:
    """Put the work dir's copy of the config back if the run fails before
    it saves a checkpoint.

    MMEngine's ``Runner`` overwrites ``work_dir/<config name>`` when it
    starts; a start that then fails (a resume error, a bad data set) would
    leave a copy that no longer describes the checkpoints beside it.
    """
    name = osp.basename(cfg.filename) if cfg.filename else None
    path = osp.join(cfg.work_dir, name) if name else None
    pointer = osp.join(cfg.work_dir, 'last_checkpoint')

    def read(file):
        if file and osp.isfile(file):
            with open(file, 'rb') as f:
                return f.read()
        return None

    copy, saved = read(path), read(pointer)
    try:
        yield
    except BaseException:
        if copy is not None and read(pointer) == saved and \
                read(path) != copy:
            from .atomic_backend import atomic_write
            atomic_write(copy, path)
        raise
