# Copyright (c) ffl_mm contributors.
"""ffl_mm: online mutual knowledge distillation (FFL, MFEF) for MMPretrain.

Importing this package registers every ffl_mm component into MMPretrain's
registries (``MODELS``, ``METRICS``, ``HOOKS``, ``DATASETS``,
``TRANSFORMS``; the ``TorchDefault`` initialiser into MMEngine's
``WEIGHT_INITIALIZERS``), so a config only needs::

    custom_imports = dict(imports=['ffl_mm'], allow_failed_imports=False)

and does nothing else: MMEngine's file backends and checkpoint loaders stay
as they are (the safe loader and atomic writer are installed by
:mod:`ffl_mm.engine.compat`, which ffl_mm's configs and tools import), and no
tooling is loaded (``ffl_mm.apis``, ``ffl_mm.analysis`` and
``ffl_mm.engine.launch`` are imported by whoever uses them).
"""
from mmengine.config.utils import MODULE2PACKAGE

from .version import __version__, version_info
from . import datasets, engine, evaluation, models  # noqa: F401,E402

# Lets configs inherit ours as ``_base_ = ['ffl_mm::ffl/...py']`` once
# ffl_mm is imported (tools/train.py imports it before reading a config).
MODULE2PACKAGE.setdefault('ffl_mm', 'ffl_mm')

__all__ = ['__version__', 'version_info']
