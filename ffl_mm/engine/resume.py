# Copyright (c) ffl_mm contributors.
"""Which checkpoint ``--resume`` (auto) should continue from."""
import glob
import logging
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmengine.logging import print_log

from .checkpoint_loader import CheckpointLoadError, load_from_safe_local

_NUMBER = re.compile(r'(?:epoch|iter)_(\d+)\.pth$')


def _step(path: str) -> int:
    """N of ``epoch_N.pth`` / ``iter_N.pth``; -1 for other names."""
    match = _NUMBER.search(osp.basename(path))
    return int(match.group(1)) if match else -1


def _candidates(work_dir: str) -> List[str]:
    """Checkpoints of a work dir, newest first: by the number in
    ``epoch_N.pth`` / ``iter_N.pth``, then by modification time."""
    paths = glob.glob(osp.join(work_dir, '*.pth'))

    def key(path):
        return (_step(path), osp.getmtime(path))

    return sorted(paths, key=key, reverse=True)


def latest_checkpoint_pointer(work_dir: str) -> Optional[str]:
    """The checkpoint named in MMEngine's ``last_checkpoint`` file."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    return path or None


def _training_state_problem(checkpoint: dict) -> Optional[str]:
    """What would make MMEngine's resume fail on ``checkpoint`` after it
    loaded (a malformed ``meta`` or message-hub state), or None."""
    from mmengine.logging import HistoryBuffer, MessageHub
    if not isinstance(checkpoint['meta'], dict):
        return f'its meta is a {type(checkpoint["meta"]).__name__}, not a dict'
    hub = checkpoint.get('message_hub')
    if hub is None:
        return None
    try:
        scalars = hub['log_scalars']
        if not all(isinstance(v, HistoryBuffer) for v in scalars.values()):
            raise TypeError('log_scalars holds values that are not '
                            'HistoryBuffer')
        MessageHub('ffl_mm_resume_probe').load_state_dict(hub)
    except Exception as error:  # anything MMEngine's resume would raise
        return (f'its message_hub state is malformed '
                f'({type(error).__name__}: {error})')
    return None


def find_resumable_checkpoint(
        work_dir: str) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The newest checkpoint of ``work_dir`` that loads.

    ``epoch_N.pth`` / ``iter_N.pth`` from the highest N down; the file
    named by ``last_checkpoint`` comes first unless a newer-numbered file
    exists (a pointer that could not be rewritten after the last save). A
    file that cannot be read (truncated, not a checkpoint, missing) is
    skipped and reported; an unsafe one (:class:`UnsafeCheckpointError`) is
    not skipped: the error propagates.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        tuple: ``(path or None, skipped)`` with ``skipped`` a list of
        ``(path, reason)`` for every newer file that could not be used.
    """
    latest = latest_checkpoint_pointer(work_dir)
    order = [p for p in _candidates(work_dir)
             if latest is None or osp.abspath(p) != osp.abspath(latest)]
    if latest is not None:
        # the pointer comes first unless a newer-numbered checkpoint exists
        # (a pointer that could not be rewritten after the last save)
        newer = [p for p in order if _step(p) > _step(latest) >= 0]
        order.insert(len(newer), latest)
    skipped = []
    for path in order:
        if not osp.isfile(path):
            skipped.append((path, 'file does not exist'))
            continue
        try:
            checkpoint = load_from_safe_local(path, map_location='cpu')
        except CheckpointLoadError as error:
            skipped.append((path, str(error)))
            continue
        if not isinstance(checkpoint, dict) or 'meta' not in checkpoint or \
                'state_dict' not in checkpoint:
            skipped.append((path, 'not a training checkpoint (no meta / '
                            'state_dict)'))
            continue
        problem = _training_state_problem(checkpoint)
        if problem:
            skipped.append((path, problem))
            continue
        return path, skipped
    return None, skipped


def resolve_auto_resume(cfg, resume: Optional[str]) -> None:
    """``--resume`` without a path: point ``cfg.load_from`` at the newest
    checkpoint of ``cfg.work_dir`` that loads (in place).

    MMEngine would take the one named in ``last_checkpoint`` and fail if it
    is damaged; a truncated or unreadable newest file is skipped, with a
    warning naming it and why, for the previous good one.

    Args:
        cfg (Config): After MMPretrain's ``merge_args`` (``work_dir`` set).
        resume (str, optional): The ``--resume`` argument (``'auto'``
            without a path); anything else leaves ``cfg`` alone.

    Raises:
        SystemExit: Checkpoints exist and none of them loads.
    """
    if resume != 'auto' or not osp.isdir(cfg.work_dir):
        return
    path, skipped = find_resumable_checkpoint(cfg.work_dir)
    for bad, reason in skipped:
        print_log(f'--resume: skipping {bad}: {reason}', logger='current',
                  level=logging.WARNING)
    if path is None:
        if skipped:
            raise SystemExit(
                f'--resume: no readable checkpoint in {cfg.work_dir} (every '
                'one above is damaged); drop --resume to start from scratch '
                'or give --resume PATH.')
        return  # no checkpoint yet: MMEngine starts from scratch
    if skipped or path != latest_checkpoint_pointer(cfg.work_dir):
        # MMEngine would resume from last_checkpoint (damaged or missing)
        print_log(f'--resume: resuming from {path}, the newest readable '
                  'checkpoint.', logger='current', level=logging.WARNING)
        cfg.load_from = path
