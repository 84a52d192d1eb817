# Copyright (c) ffl_mm contributors.
from .launch import sanitize_dataloaders, setup_launcher

__all__ = ['sanitize_dataloaders', 'setup_launcher']
