# Copyright (c) ffl_mm contributors.
"""ffl_mm's registry nodes: one child of each of MMPretrain's, as
MMPretrain's are children of MMEngine's.

Every ffl_mm component registers here, in scope ``ffl_mm``. What that gives:

* ffl_mm's configs set ``default_scope = 'ffl_mm'``: a bare type name is
  looked up here first, then in MMPretrain's and MMEngine's registries, so
  ``type='ResNet'`` and ``type='MultiBranchClassifier'`` both build, and a
  component that MMPretrain builds inside its own classes (the backbone of an
  ``ImageClassifier``, a transform of a dataset's pipeline) is found too.
* Any other scope reaches ffl_mm's types as ``ffl_mm.<Type>`` (for example
  ``dict(type='ffl_mm.MultiBranchAccuracy')`` in an MMPretrain config), or
  for a whole sub-tree with ``_scope_='ffl_mm'``; MMEngine then imports this
  module, and the ``locations`` below register the components, without an
  ``import ffl_mm`` or ``custom_imports``.
* Configs inherit ffl_mm's as ``_base_ = ['ffl_mm::ffl/...py']`` once this
  module is imported (``import ffl_mm`` imports it; ffl_mm's and mim's tools
  do so before they read a config).
"""
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry

from .utils.private_api import registry_locations

__all__ = [
    'RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS', 'LOG_PROCESSORS',
    'OPTIMIZERS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS',
    'PARAM_SCHEDULERS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS',
    'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'BATCH_AUGMENTS', 'TASK_UTILS',
    'METRICS', 'EVALUATORS', 'VISUALIZERS', 'VISBACKENDS', 'ALL_REGISTRIES'
]

SCOPE = 'ffl_mm'

# MMEngine maps a config scope (``ffl_mm::``) to the installed distribution
# that holds its configs; the map is a fixed dict of OpenMMLab projects.
MODULE2PACKAGE.setdefault(SCOPE, 'ffl_mm')


def _child(name: str, location: str) -> Registry:
    """The ffl_mm node below MMPretrain's registry called ``name``.

    Its locations include the parent's: a lookup that falls through to the
    parent reads the parent's table without importing the parent's
    modules (e.g. ``UniversalVisualizer`` in ``mmpretrain.visualization``).
    """
    parent = getattr(mmpretrain_registry, name)
    return Registry(
        parent.name,
        parent=parent,
        scope=SCOPE,
        locations=[location, *registry_locations(parent)])


RUNNERS = _child('RUNNERS', 'ffl_mm.engine')
RUNNER_CONSTRUCTORS = _child('RUNNER_CONSTRUCTORS', 'ffl_mm.engine')
LOOPS = _child('LOOPS', 'ffl_mm.engine')
HOOKS = _child('HOOKS', 'ffl_mm.engine')
LOG_PROCESSORS = _child('LOG_PROCESSORS', 'ffl_mm.engine')
OPTIMIZERS = _child('OPTIMIZERS', 'ffl_mm.engine')
OPTIM_WRAPPERS = _child('OPTIM_WRAPPERS', 'ffl_mm.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child('OPTIM_WRAPPER_CONSTRUCTORS',
                                    'ffl_mm.engine')
PARAM_SCHEDULERS = _child('PARAM_SCHEDULERS', 'ffl_mm.engine')

DATASETS = _child('DATASETS', 'ffl_mm.datasets')
DATA_SAMPLERS = _child('DATA_SAMPLERS', 'ffl_mm.datasets')
TRANSFORMS = _child('TRANSFORMS', 'ffl_mm.datasets')

MODELS = _child('MODELS', 'ffl_mm.models')
MODEL_WRAPPERS = _child('MODEL_WRAPPERS', 'ffl_mm.models')
WEIGHT_INITIALIZERS = _child('WEIGHT_INITIALIZERS', 'ffl_mm.models')
BATCH_AUGMENTS = _child('BATCH_AUGMENTS', 'ffl_mm.models')
TASK_UTILS = _child('TASK_UTILS', 'ffl_mm.models')

METRICS = _child('METRICS', 'ffl_mm.evaluation')
EVALUATORS = _child('EVALUATORS', 'ffl_mm.evaluation')

# ffl_mm has no visualisers of its own; the package is the location so that
# MMEngine does not warn about a registry without one.
VISUALIZERS = _child('VISUALIZERS', 'ffl_mm')
VISBACKENDS = _child('VISBACKENDS', 'ffl_mm')

#: Every node above, by MMPretrain's name for it.
ALL_REGISTRIES = {name: globals()[name] for name in __all__[:-1]}


def register_model_index() -> None:
    """Put the names of ffl_mm's model-zoo metafiles (``model-index.yml``)
    into MMPretrain's ``ModelHub``, once, so that ``mmpretrain.get_model``,
    ``list_models`` and the inferencers take them
    (``get_model('ffl_resnet32x2_digits')``). ``import ffl_mm`` calls it.

    The index is read from the installed package's ``.mim`` folder, or from
    the checkout that holds this package.
    """
    import os.path as osp

    from mmpretrain.apis import ModelHub
    package = osp.dirname(osp.abspath(__file__))
    for root in (osp.join(package, '.mim'), osp.dirname(package)):
        index = osp.join(root, 'model-index.yml')
        if osp.isfile(index):
            break
    else:
        return  # an install without its model zoo: nothing to name
    if not ModelHub.has('ffl_resnet32x2_digits'):
        ModelHub.register_model_index(index, config_prefix=root)
