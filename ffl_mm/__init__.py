# Copyright (c) ffl_mm contributors.
"""ffl_mm: online mutual knowledge distillation (FFL, MFEF) for MMPretrain.

Importing this package registers every ffl_mm component into MMPretrain's own
registries (``mmpretrain.registry.MODELS``, ``METRICS``, ``HOOKS``,
``DATASETS``), so a config only needs::

    custom_imports = dict(imports=['ffl_mm'], allow_failed_imports=False)

It also makes MMEngine read local checkpoints through ffl_mm's safe loader
(see :mod:`ffl_mm.engine.checkpoint_loader`).
"""
from mmengine.config.utils import MODULE2PACKAGE

from .version import __version__, version_info
from . import apis, datasets, engine, evaluation, models  # noqa: F401,E402

# Lets configs inherit ours as ``_base_ = ['ffl_mm::ffl/...py']`` once
# ffl_mm is imported (tools/train.py imports it before reading a config).
MODULE2PACKAGE.setdefault('ffl_mm', 'ffl_mm')

__all__ = ['__version__', 'version_info']
