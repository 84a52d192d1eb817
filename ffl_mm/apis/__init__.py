# Copyright (c) ffl_mm contributors.
from . import benchmark, export
from .launch import (check_data_paths, close_distributed, quiet_logger,
                     sanitize_dataloaders, setup_launcher, tune_cpu_allocator)

__all__ = [
    'benchmark', 'check_data_paths', 'close_distributed', 'export',
    'quiet_logger', 'sanitize_dataloaders', 'setup_launcher',
    'tune_cpu_allocator'
]
