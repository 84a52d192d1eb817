# Copyright (c) ffl_mm contributors.
"""PyTorch's own initialisation of a layer, as an MMEngine initialiser."""
import torch.nn as nn
from mmengine.model.weight_init import BaseInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_INITIALIZERS

from ffl_mm.registry import WEIGHT_INITIALIZERS
from ...utils.private_api import records_init_info


# Also in MMEngine's root node, the one exception to "everything in ffl_mm's
# registries": ``init_weights`` builds initialisers in whatever scope is
# current, often none in a user's script (``MODELS.build(cfg.model)`` then
# ``init_weights()``), and MMEngine's root node cannot reach a grandchild
# such as ``ffl_mm.TorchDefault``.
@MMENGINE_INITIALIZERS.register_module(name='TorchDefault')
@WEIGHT_INITIALIZERS.register_module(name='TorchDefault')
class TorchDefaultInit(BaseInit):
    """Give the matching layers the initialisation PyTorch gives them on
    construction, by calling their ``reset_parameters()``.

    For ``nn.Linear`` that is weight and bias uniform in ``±1/√fan_in``
    (``kaiming_uniform_`` with ``a=√5`` for the weight). MMEngine's
    ``Kaiming`` initialiser can give the weight that distribution but fills
    the bias with a constant; no stock initialiser draws a bias whose range
    depends on the layer's fan-in. The FFL authors' code keeps this default
    for every classifier, while MMPretrain's ``LinearClsHead`` draws
    Normal(0, 0.01) with a zero bias; in short, low-data schedules the
    difference moves accuracy, so ffl_mm's CIFAR configs use::

        head=dict(type='LinearClsHead', ...,
                  init_cfg=dict(type='TorchDefault', layer='Linear'))

    Args:
        layer (str | list[str]): Class names (or base class names) of the
            layers to reset, as for MMEngine's initialisers, e.g.
            ``'Linear'``. Required: every layer type has its own default.
    """

    def __init__(self, layer=None, **kwargs):
        if kwargs:
            raise TypeError(
                f'TorchDefault: unexpected argument(s) {sorted(kwargs)}; '
                'PyTorch\'s default has no parameters, only `layer`.')
        super().__init__(layer=layer)
        if not self.layer:
            raise ValueError(
                "TorchDefault: give `layer` (e.g. layer='Linear'), the "
                'class names of the layers to reset.')

    def __call__(self, module: nn.Module) -> None:
        names = set(self.layer)

        def init(m):
            own = {type(m).__name__, *(b.__name__ for b in type(m).__bases__)}
            if own & names and hasattr(m, 'reset_parameters'):
                m.reset_parameters()

        module.apply(init)
        if records_init_info(module):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: layer={self.layer}'
