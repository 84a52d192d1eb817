# Copyright (c) ffl_mm contributors.
"""Checkpoint files that survive torch >= 2.6 and crashes: importing this
module changes two MMEngine defaults for the whole process.

* Reading: MMEngine's loader of local checkpoint paths (``CheckpointLoader``
  prefix ``''``) becomes :func:`~.checkpoint_loader.load_from_safe_local`:
  ``weights_only`` stays on, the objects of MMEngine's own training state
  are allowed, a pickle that would run anything else is refused with an
  error naming the file (torch >= 2.6 refuses every MMEngine training
  checkpoint otherwise, so ``--resume`` and ``tools/test.py`` fail).
* Writing: MMEngine's ``local`` file backend becomes
  :class:`~.atomic_backend.AtomicLocalBackend`: checkpoints and the
  ``last_checkpoint`` pointer are written to a temporary file, flushed and
  renamed, so a crash mid-save leaves the previous file whole.

``import ffl_mm`` does not import this module. ffl_mm's configs list it in
``custom_imports`` (``configs/_base_/default_runtime.py``), so that ffl_mm's
tools, MMPretrain's tools and ``mim`` get it alike, and ffl_mm's tools import
it. Opt out by leaving it out of a config's ``custom_imports``; opt in from
Python with ``import ffl_mm.engine.compat``. Importing it twice is harmless.
"""
from mmengine.fileio import register_backend
from mmengine.runner.checkpoint import CheckpointLoader

from .atomic_backend import AtomicLocalBackend
from .checkpoint_loader import load_from_safe_local

CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_safe_local)
register_backend('local', AtomicLocalBackend, force=True, prefixes='')
