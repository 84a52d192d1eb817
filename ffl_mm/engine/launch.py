# Copyright (c) ffl_mm contributors.
"""What ``tools/train.py`` and ``tools/test.py`` add to MMPretrain's own
tools: MMPretrain's argument handling itself (:func:`mmpretrain_tool`),
distributed set-up that also works without CUDA, data-loader settings that
PyTorch would reject, a data-path check and the CPU allocator tuning. Not
imported by ``import ffl_mm``."""
import argparse
import contextlib
import datetime
import importlib.util
import logging
import os
import os.path as osp
import re
import sys
from types import ModuleType
from typing import Iterator, List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger, print_log

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Record the launcher in ``cfg``; on a machine without CUDA, start the
    process group with gloo first.

    With CUDA (or ``launcher='none'``) nothing else changes: the Runner calls
    MMEngine's ``init_dist`` with ``env_cfg.dist_cfg`` (NCCL by default),
    exactly as in MMPretrain. Without CUDA, ``init_dist('pytorch')`` would
    crash in ``torch.cuda.set_device``, so this function initialises the
    ``gloo`` process group from the ``torchrun`` environment itself (the
    Runner then sees an initialised group and skips ``init_dist``), and
    makes the DDP wrapper keep the model on the CPU (``device_ids=None``).

    Args:
        cfg (Config): The config; ``cfg.launcher`` and, on CPU,
            ``cfg.model_wrapper_cfg`` are set in place.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Raises:
        ValueError: A launcher other than ``'pytorch'`` without CUDA, or
            a ``dist_cfg.backend`` that cannot run on the CPU.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ValueError(
            f'--launcher {launcher} needs CUDA, which this machine lacks. '
            'Use tools/dist_train.sh (torchrun, --launcher pytorch) for CPU '
            'runs.')
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend not in ('nccl', 'gloo'):
        raise ValueError(f'env_cfg.dist_cfg.backend={backend!r} cannot run '
                         "on the CPU; use 'gloo'.")
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout', None)
        kwargs = {}
        if timeout is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)
        print_log(
            f'No CUDA: initialised the gloo process group (rank '
            f'{torch_dist.get_rank()}/{torch_dist.get_world_size()}).',
            logger='current')
    wrapper = cfg.get('model_wrapper_cfg', None) or ConfigDict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def close_distributed() -> None:
    """Leave the process group at the end of a finished run.

    MMEngine never destroys the group it starts. With gloo on the CPU the
    group's worker threads may then still be joinable when the interpreter
    exits, and the C++ runtime may abort the process ("terminate called
    without an active exception", SIGABRT) after every checkpoint and log
    has been written (see docs/changelog.md). A barrier (every rank is
    done) and ``destroy_process_group`` join them first. A no-op outside
    distributed runs. Not called when a run fails: a barrier then could
    wait for a dead rank.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def sanitize_dataloaders(cfg: Config) -> None:
    """Give data loaders with ``num_workers=0`` ``persistent_workers=False``
    (in place).

    MMPretrain's tools turn ``persistent_workers`` on for every loader that
    does not set it, and PyTorch raises a ValueError for persistent workers
    without workers (the digits configs load in the main process).
    """
    for key in DATALOADER_KEYS:
        loader = cfg.get(key, None)
        if loader and loader.get('num_workers', 0) == 0 and \
                loader.get('persistent_workers', False):
            loader['persistent_workers'] = False


def mmpretrain_tool(name: str) -> ModuleType:
    """MMPretrain's own ``tools/<name>.py``, loaded as a module.

    ffl_mm's ``tools/train.py`` and ``tools/test.py`` parse their arguments
    and merge them into the config with these very functions
    (``parse_args``, ``merge_args``), so that they behave exactly as
    MMPretrain's tools, data-loader defaults included. The mmpretrain wheel
    ships them under ``mmpretrain/.mim/tools``; a source checkout of
    MMPretrain has them under ``tools/``.
    """
    import mmpretrain
    package = osp.dirname(mmpretrain.__file__)
    for path in (osp.join(package, '.mim', 'tools', f'{name}.py'),
                 osp.join(osp.dirname(package), 'tools', f'{name}.py')):
        if osp.isfile(path):
            spec = importlib.util.spec_from_file_location(
                f'mmpretrain_tools_{name}', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(
        f'MMPretrain\'s tools/{name}.py is not installed with mmpretrain '
        f'({package}); install the mmpretrain wheel (pip install '
        'mmpretrain==1.2.0).')


@contextlib.contextmanager
def tool_argv(prog: str, argv: Optional[List[str]]) -> Iterator[None]:
    """``sys.argv`` as ``[prog, *argv]`` inside the block (the command line
    of this process when ``argv`` is None), for MMPretrain's tools, which
    read ``sys.argv`` themselves."""
    saved = sys.argv
    sys.argv = [prog, *(sys.argv[1:] if argv is None else argv)]
    try:
        yield
    finally:
        sys.argv = saved


def parse_tool_args(tool: ModuleType, argv: Optional[List[str]],
                    prog: str) -> argparse.Namespace:
    """``tool.parse_args()`` on ``argv``."""
    with tool_argv(prog, argv):
        return tool.parse_args()


#: The open lock files of this process, by path.
_WORK_DIR_LOCKS = {}
LOCK_NAME = '.ffl_mm.lock'


def lock_work_dir(work_dir: str) -> Optional[str]:
    """Hold an exclusive lock on ``work_dir`` until
    :func:`unlock_work_dirs` or the end of this process, so that a second
    run there stops at once instead of mixing its log and checkpoints with
    this one's. Only rank 0 of a distributed run locks.

    The lock is ``flock`` on ``<work_dir>/.ffl_mm.lock``, which the system
    releases when the holder exits however it ends: a lock file left by a
    dead process is taken over (the returned message says so). A no-op
    where ``fcntl`` does not exist (Windows).

    Raises:
        SystemExit: Another live process holds the work dir; names it.

    Returns:
        str | None: A message when a dead process's lock was taken over.
    """
    if int(os.environ.get('RANK', '0')) != 0:
        return None
    try:
        import fcntl
    except ImportError:
        return None
    os.makedirs(work_dir, exist_ok=True)
    path = osp.abspath(osp.join(work_dir, LOCK_NAME))
    if path in _WORK_DIR_LOCKS:
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
    _WORK_DIR_LOCKS[path] = handle
    if previous and previous != str(os.getpid()):
        return (f'took over the lock of work dir {work_dir} left by process '
                f'{previous}, which is no longer running')
    return None


def unlock_work_dirs() -> None:
    """Release the work-dir locks this process holds (a finished run)."""
    while _WORK_DIR_LOCKS:
        _, handle = _WORK_DIR_LOCKS.popitem()
        handle.close()  # closing the file releases its flock


def python_command() -> str:
    """The interpreter running this tool, as a user types it from the
    current directory (``.venv/bin/python`` after ``make``), for the
    commands that tools print."""
    exe = sys.executable
    rel = osp.relpath(exe, os.getcwd())
    return exe if rel.startswith('..') else rel


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


def quiet_logger(level: int = logging.WARNING) -> None:
    """Only ``level`` and above from MMEngine's current logger: the
    per-parameter report of ``init_weights()`` and similar INFO lines
    would bury what a tool prints."""
    MMLogger.get_current_instance().setLevel(level)


def _datasets(cfg) -> list:
    """``(where, dataset cfg)`` of every dataset of the data loaders,
    wrappers (``dataset=``/``datasets=``) unpacked."""
    found = []

    def walk(where, ds):
        if not isinstance(ds, dict):
            return
        found.append((where, ds))
        if isinstance(ds.get('dataset'), dict):
            walk(f'{where}.dataset', ds['dataset'])
        for i, inner in enumerate(ds.get('datasets') or []):
            walk(f'{where}.datasets[{i}]', inner)

    for loader in DATALOADER_KEYS:
        if isinstance(cfg.get(loader), dict):
            walk(f'{loader}.dataset', cfg[loader].get('dataset'))
    return found


def check_data_paths(cfg: Config) -> None:
    """A clear error, before anything is built, for a data set whose
    ``data_root`` or ``ann_file`` does not exist (unless it may download
    itself: ``download=True``), or whose ``ann_file`` is empty.

    Raises:
        FileNotFoundError: Naming the config key, the path and the fix.
        ValueError: An empty ``ann_file``.
    """
    checked = set()
    for where, ds in _datasets(cfg):
        if ds.get('download', False):
            continue
        root = ds.get('data_root') or ''
        if root and not os.path.exists(root):
            hint = ''
            if re.search(r'CIFAR|MNIST', str(ds.get('type', ''))):
                hint = (f', or set {where}.download=True to let MMPretrain '
                        'download it')
            raise FileNotFoundError(
                f'{where}.data_root={root!r} does not exist (looked in '
                f'{os.path.abspath(root)}). Put the data there (see '
                'docs/get_started.md, "Data") or point data_root at it with --cfg-options '
                f'{where}.data_root=PATH{hint}.')
        ann = ds.get('ann_file') or ''
        if ann:
            path = ann if os.path.isabs(ann) else os.path.join(root, ann)
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f'{where}.ann_file={ann!r} does not exist ({path}); fix '
                    f'it with --cfg-options {where}.ann_file=PATH.')
            if osp.isfile(path) and _is_blank(path):
                # MMEngine would fail in np.concatenate ("need at least one
                # array to concatenate")
                raise ValueError(
                    f'{where}.ann_file={ann!r} ({path}) is empty: the data '
                    'set would hold no samples. Fill it (one "path label" '
                    'line per image) or point ann_file at another file.')
        if root and os.path.isdir(root) and (root, ds.get('type')) not in \
                checked:  # val and test loaders often share one data set
            checked.add((root, ds.get('type')))
            _check_cifar_files(where, ds, root)


def _is_blank(path: str) -> bool:
    """Whether the file holds nothing but white space (read up to its first
    other character)."""
    with open(path, 'rb') as f:
        for line in f:
            if line.strip():
                return False
    return True


def _check_cifar_files(where: str, ds: dict, root: str) -> None:
    """For MMPretrain's CIFAR data sets: every file of the split in place
    with the MD5 MMPretrain expects. Otherwise MMPretrain (``download``
    defaults to True) starts a download, which fails after a long wait on a
    machine without network and never says which local file is bad."""
    from mmpretrain.datasets import CIFAR10
    from mmpretrain.datasets.utils import check_integrity

    from ..registry import DATASETS
    dataset_type = ds.get('type')
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) \
        else dataset_type
    if not (isinstance(cls, type) and issubclass(cls, CIFAR10)):
        return
    for name, md5 in [*cls.train_list, *cls.test_list,
                      (cls.meta['filename'], cls.meta['md5'])]:
        path = os.path.join(root, cls.base_folder, name)
        if not os.path.exists(path):
            problem = 'is missing'
        elif not check_integrity(path, md5):
            problem = (f'does not have the MD5 {md5} of the '
                       f'official {cls.__name__} file (damaged or another '
                       'file)')
        else:
            continue
        raise FileNotFoundError(
            f'{where}: {path} {problem}. Replace it with the file from '
            f'the python version of {cls.__name__} ({cls.url}), or remove '
            f'{os.path.join(root, cls.base_folder)} and set '
            f'{where}.download=True on a machine with network access.')


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process on glibc, for training on the CPU.

    By default glibc serves every large block (an activation map, a
    gradient) with a fresh ``mmap`` and returns it to the system when it is
    freed, so each training step page-faults its whole working set again,
    and MMEngine's order (gradients freed after the optimizer step) costs
    more than zeroing them before backward. With the tuning the process
    keeps its peak memory instead of returning it between steps; figures
    in docs/benchmarks.md.

    A no-op (returns False) off glibc, or with the environment variable
    ``FFL_MM_NO_MALLOC_TUNING=1``.
    """
    if os.environ.get('FFL_MM_NO_MALLOC_TUNING') == '1':
        return False
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1  # large blocks from the heap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # never trim it
    ok &= mallopt(_M_TOP_PAD, 2**28) == 1  # grow it in 256 MB steps
    return bool(ok)
