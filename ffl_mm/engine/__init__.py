# Copyright (c) ffl_mm contributors.
from . import hooks, optimizers, runner  # noqa: F401
from .atomic_backend import (AtomicLocalBackend, atomic_write,
                             remove_stale_temporaries)
from .checkpoint_loader import (CheckpointLoadError, UnsafeCheckpointError,
                                load_from_safe_local)

from .resume import (check_resume_fits, find_resumable_checkpoint,
                     latest_checkpoint_pointer, resolve_auto_resume,
                     state_dict_differences)

__all__ = [
    'AtomicLocalBackend', 'atomic_write', 'remove_stale_temporaries',
    'CheckpointLoadError', 'UnsafeCheckpointError', 'check_resume_fits',
    'find_resumable_checkpoint', 'state_dict_differences',
    'latest_checkpoint_pointer', 'load_from_safe_local', 'resolve_auto_resume'
]
