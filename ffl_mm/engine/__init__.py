# Copyright (c) ffl_mm contributors.
from . import hooks  # noqa: F401
from .checkpoint_loader import (CheckpointLoadError, UnsafeCheckpointError,
                                load_from_safe_local)

__all__ = [
    'CheckpointLoadError', 'UnsafeCheckpointError', 'load_from_safe_local'
]
