# Copyright (c) ffl_mm contributors.
"""Small helpers shared by ffl_mm's models: output names, argument checks,
PyTorch's default initialisation as an MMEngine initialiser."""
from . import output_names
from .torch_default_init import TorchDefaultInit

__all__ = ['TorchDefaultInit', 'output_names']
