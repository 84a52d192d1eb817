# Copyright (c) ffl_mm contributors.
"""ffl_mm: online mutual knowledge distillation for MMPretrain (FFL, MFEF,
and the methods they compare against).

Importing this package registers every ffl_mm component into ffl_mm's
registries (:mod:`ffl_mm.registry`, scope ``ffl_mm``, children of
MMPretrain's), the ``ffl_mm::`` config scope and the model-zoo names in
MMPretrain's ``ModelHub`` (``get_model('ffl_resnet32x2_digits')``), and
does nothing else:
MMEngine's file backends and checkpoint loaders stay as they are (the safe
loader and atomic writer are installed by :mod:`ffl_mm.engine.compat`, which
ffl_mm's configs and tools import), and no tooling is loaded
(``ffl_mm.apis`` and the tools' helpers in ``ffl_mm.tools_support`` are
imported by whoever uses them).
"""
from .version import __version__, version_info
from . import registry  # noqa: F401,E402 (first: the others register there)
from . import datasets, engine, evaluation, models  # noqa: F401,E402

registry.register_model_index()

__all__ = ['__version__', 'version_info']
