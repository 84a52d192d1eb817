# Copyright (c) ffl_mm contributors.
from . import benchmark
from .launch import sanitize_dataloaders, setup_launcher

__all__ = ['benchmark', 'sanitize_dataloaders', 'setup_launcher']
