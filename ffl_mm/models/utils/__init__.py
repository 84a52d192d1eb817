# Copyright (c) ffl_mm contributors.
"""Small helpers of ffl_mm's models: PyTorch's default initialisation as
an MMEngine initialiser, the memory switch (``recompute``) and KDCL's
teachers. Helpers of every layer (output names, argument checks) are in
:mod:`ffl_mm.utils`."""
from .torch_default_init import TorchDefaultInit

__all__ = ['TorchDefaultInit']
