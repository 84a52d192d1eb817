# Copyright (c) ffl_mm contributors.
from . import benchmark, export
from .launch import quiet_logger, sanitize_dataloaders, setup_launcher

__all__ = ['benchmark', 'export', 'quiet_logger', 'sanitize_dataloaders',
           'setup_launcher']
