# Copyright (c) ffl_mm contributors.
"""Which checkpoint ``--resume`` (auto) should continue from."""
import glob
import logging
import os.path as osp
import re
from typing import List, Optional, Tuple

import torch
from mmengine.logging import print_log

from ..utils.branch_keys import branches_in
from .checkpoint_loader import CheckpointLoadError, load_from_safe_local

_NUMBER = re.compile(r'(?:epoch_(\d+)(?:_iter_(\d+))?|iter_(\d+))\.pth$')


def _step(path: str) -> Tuple[int, int]:
    """Where a checkpoint's name says it was saved, as a sortable pair:
    ``(N, -1)`` for ``epoch_N.pth`` and ``iter_N.pth``, ``(E - 1, I)`` for
    ``epoch_E_iter_I.pth`` (saved on a signal in epoch E, after I
    iterations: after ``epoch_{E-1}.pth``, before ``epoch_E.pth``);
    ``(-1, -1)`` for other names."""
    match = _NUMBER.search(osp.basename(path))
    if not match:
        return (-1, -1)
    epoch, inner, iteration = match.groups()
    if iteration is not None:
        return (int(iteration), -1)
    if inner is not None:
        return (int(epoch) - 1, int(inner))
    return (int(epoch), -1)


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


def _non_finite(state_dict: dict) -> List[str]:
    """Names of the floating tensors of ``state_dict`` holding NaN or
    inf."""
    return [name for name, value in state_dict.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def _unusable(path: str):
    """``(checkpoint, None)`` for a checkpoint ``--resume`` can continue
    from, else ``(None, reason)``. :class:`UnsafeCheckpointError`
    propagates."""
    if not osp.isfile(path):
        return None, 'file does not exist'
    try:
        checkpoint = load_from_safe_local(path, map_location='cpu')
    except CheckpointLoadError as error:
        return None, str(error)
    if not isinstance(checkpoint, dict) or 'meta' not in checkpoint or \
            'state_dict' not in checkpoint:
        return None, 'not a training checkpoint (no meta / state_dict)'
    bad = _non_finite(checkpoint['state_dict'])
    if bad:
        return None, (f'{len(bad)} weight tensor(s) hold NaN or inf '
                      f'({", ".join(bad[:3])}{", ..." if len(bad) > 3 else ""}'
                      '): saved by a run that diverged')
    problem = _training_state_problem(checkpoint)
    if problem:
        return None, problem
    return checkpoint, None


def find_resumable_checkpoint(
        work_dir: str) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The newest checkpoint of ``work_dir`` that loads.

    ``epoch_N.pth`` / ``iter_N.pth`` from the highest N down; the file
    named by ``last_checkpoint`` comes first unless a newer-numbered file
    exists (a pointer that could not be rewritten after the last save). A
    file that cannot be read (truncated, not a checkpoint, missing) or holds
    NaN/inf weights is skipped and reported; an unsafe one
    (:class:`UnsafeCheckpointError`) is not skipped: the error propagates.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        tuple: ``(path or None, skipped)`` with ``skipped`` a list of
        ``(path, reason)`` for every newer file that could not be used.
    """
    path, _, skipped = _newest_usable(work_dir)
    return path, skipped


def _newest_usable(work_dir: str):
    """``(path, checkpoint, skipped)`` of :func:`find_resumable_checkpoint`,
    with the loaded checkpoint (None with the path)."""
    latest = latest_checkpoint_pointer(work_dir)
    order = [p for p in _candidates(work_dir)
             if latest is None or osp.abspath(p) != osp.abspath(latest)]
    if latest is not None:
        # the pointer comes first unless a newer-numbered checkpoint exists
        # (a pointer that could not be rewritten after the last save)
        newer = [p for p in order if _step(p) > _step(latest) >= (0, -1)]
        order.insert(len(newer), latest)
    skipped = []
    for path in order:
        checkpoint, reason = _unusable(path)
        if reason:
            skipped.append((path, reason))
            continue
        return path, checkpoint, skipped
    return None, None, skipped


class ResumeError(RuntimeError):
    """No checkpoint a run can resume from, or one that does not fit."""


def select_resume_checkpoint(work_dir: str, path: Optional[str] = None,
                             where: str = '--resume'):
    """The checkpoint a resumed run continues from, and its contents.

    With ``path``, the file must be a checkpoint a run can continue from.
    Without, the newest usable one of ``work_dir``: MMEngine would take the
    one named in ``last_checkpoint`` and fail if it is damaged; a truncated,
    unreadable or diverged (NaN/inf weights) newest file is skipped, with a
    warning naming it and why, for the previous good one.

    Args:
        work_dir (str): The run's work dir.
        path (str, optional): The checkpoint given (``--resume PATH``,
            ``load_from`` with ``resume=True``).
        where (str): How the user asked, for messages.

    Returns:
        tuple: ``(path, checkpoint)``; ``(None, None)`` when the work dir
        has no checkpoint yet (the run starts from scratch) or ``path`` is a
        remote file (left to MMEngine's backends).

    Raises:
        ResumeError: Checkpoints exist and none can be resumed from, or the
            given one cannot.
    """
    if path is not None:
        if '://' in path:
            return None, None
        checkpoint, reason = _unusable(path)
        if reason:
            raise ResumeError(f'{where} {path}: cannot resume from it: '
                              f'{reason}.')
        return path, checkpoint
    if not osp.isdir(work_dir):
        return None, None
    path, checkpoint, skipped = _newest_usable(work_dir)
    for bad, reason in skipped:
        print_log(f'{where}: skipping {bad}: {reason}', logger='current',
                  level=logging.WARNING)
    if path is None and skipped:
        raise ResumeError(
            f'{where}: no checkpoint in {work_dir} can be resumed from '
            f'({len(skipped)} found, each skipped for the reason above); '
            f'drop {where} to start from scratch, or give --resume PATH.')
    if path is not None and (
            skipped or path != latest_checkpoint_pointer(work_dir)):
        print_log(f'{where}: resuming from {path}, the newest readable '
                  'checkpoint.', logger='current', level=logging.WARNING)
    return path, checkpoint


def resolve_auto_resume(cfg, resume: Optional[str]) -> Optional[str]:
    """``--resume`` of ffl_mm's ``tools/train.py``: the checkpoint to
    continue from (:func:`select_resume_checkpoint`), set as
    ``cfg.load_from``, and checked to fit the model of ``cfg``
    (:func:`check_resume_fits`) before anything is built.
    (``ResumeCheckHook`` makes the same choice and check in the run, for
    ``resume=True`` and other tools.)

    Args:
        cfg (Config): After MMPretrain's ``merge_args`` (``work_dir`` set).
        resume (str, optional): The ``--resume`` argument (``'auto'``
            without a path, or a path); None leaves ``cfg`` alone.

    Returns:
        str or None: The checkpoint the run will resume from; None when it
        starts from scratch.

    Raises:
        SystemExit: As :class:`ResumeError`, or the checkpoint does not fit
            the model.
    """
    if resume is None:
        return None
    given = None if resume == 'auto' else resume
    if given is not None and '://' in given:
        return given
    try:
        path, checkpoint = select_resume_checkpoint(cfg.work_dir, given)
    except ResumeError as error:
        raise SystemExit(str(error)) from None
    if path is None:
        return None
    if path != latest_checkpoint_pointer(cfg.work_dir):
        cfg.load_from = path  # MMEngine would follow last_checkpoint
    check_resume_fits(cfg, path, checkpoint['state_dict'])
    return path


def resume_fit_message(path: str, differences: List[str], model: str,
                       where: str = '--resume') -> str:
    """Why ``path`` cannot be resumed into ``model``, and what to do."""
    return (f'{where}: {path} does not fit the model of {model}: '
            f'{"; ".join(differences)}. Resuming continues the run that '
            'wrote the checkpoint, with the same model. To start a new run '
            f'from the weights that fit, drop {where} and set --cfg-options '
            f'load_from={path} (MMEngine loads what fits and lists the rest), '
            'in another work dir.')


def state_dict_differences(model_state: dict, checkpoint_state: dict,
                           limit: int = 3) -> List[str]:
    """What differs between a model's state dict and a checkpoint's, in
    words: branch counts, top-level modules present in one only, missing
    and unexpected tensors, tensors of another shape. Empty when they
    match.

    Args:
        model_state (dict): ``model.state_dict()`` (name -> tensor).
        checkpoint_state (dict): The checkpoint's ``state_dict``.
        limit (int): Names listed per kind.
    """
    def names(keys):
        keys = sorted(keys)
        return ', '.join(keys[:limit]) + (', ...' if len(keys) > limit else '')

    found = []
    ours, theirs = (branches_in(model_state),
                    branches_in(checkpoint_state))
    if ours != theirs and ours and theirs:
        found.append(f'the checkpoint has {theirs} branches, the config '
                     f'{ours}')
    top_ours = {k.split('.', 1)[0] for k in model_state}
    top_theirs = {k.split('.', 1)[0] for k in checkpoint_state}
    if top_theirs - top_ours:
        found.append('modules only in the checkpoint: '
                     f'{names(top_theirs - top_ours)}')
    if top_ours - top_theirs:
        found.append('modules only in the config: '
                     f'{names(top_ours - top_theirs)}')
    missing = set(model_state) - set(checkpoint_state)
    unexpected = set(checkpoint_state) - set(model_state)
    if missing:
        found.append(f'{len(missing)} tensor(s) missing from the checkpoint '
                     f'({names(missing)})')
    if unexpected:
        found.append(f'{len(unexpected)} unexpected tensor(s) '
                     f'({names(unexpected)})')
    shapes = [f'{k}: checkpoint {tuple(checkpoint_state[k].shape)}, config '
              f'{tuple(v.shape)}' for k, v in sorted(model_state.items())
              if k in checkpoint_state and
              hasattr(checkpoint_state[k], 'shape') and
              tuple(checkpoint_state[k].shape) != tuple(v.shape)]
    if shapes:
        found.append(f'{len(shapes)} tensor(s) of another shape '
                     f'({"; ".join(shapes[:limit])}'
                     f'{"; ..." if len(shapes) > limit else ""})')
    return found


def check_resume_fits(cfg, path: str,
                      state_dict: Optional[dict] = None) -> None:
    """Stop before anything is built or written if the checkpoint ``path``
    does not fit the model of ``cfg`` (another number of branches, another
    method, heads of another size): MMEngine would fail in the optimizer
    after a wall of key lists, or at the first step.

    Args:
        cfg (Config): With ``model`` and ``default_scope``.
        path (str): The checkpoint.
        state_dict (dict, optional): Its state dict, when already loaded.

    Raises:
        SystemExit: One message saying what differs and pointing to
            ``load_from``.
    """
    from mmengine.registry import DefaultScope

    from ffl_mm.registry import MODELS
    if '://' in path:  # a remote file: left to MMEngine
        return
    if state_dict is None:
        state_dict = load_from_safe_local(path,
                                          map_location='cpu')['state_dict']
    scope = cfg.get('default_scope')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    differences = state_dict_differences(model.state_dict(), state_dict)
    if differences:
        raise SystemExit(resume_fit_message(path, differences, cfg.filename))
