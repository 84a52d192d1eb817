# Copyright (c) ffl_mm contributors.
"""The model config as MMEngine's Runner builds it."""
import copy

from mmengine.config import Config, ConfigDict


def data_preprocessor_cfg(cfg: Config) -> dict:
    """The preprocessor the Runner gives the model: ``model.
    data_preprocessor`` if set, else the config's top-level
    ``data_preprocessor`` (MMPretrain configs keep mean/std there)."""
    pre = cfg.model.get('data_preprocessor')
    if pre is None:
        pre = cfg.get('data_preprocessor')
    pre = dict(copy.deepcopy(pre or {}))
    pre.setdefault('type', 'ClsDataPreprocessor')
    return pre


def single_view_preprocessor_cfg(cfg: Config) -> dict:
    """:func:`data_preprocessor_cfg` for a model that takes one image: a
    multi-view preprocessor (ffl_mm's ``MultiViewClsDataPreprocessor``,
    which gives one view exactly as MMPretrain's ``ClsDataPreprocessor``)
    becomes MMPretrain's, so that an exported student needs only
    MMPretrain."""
    from ffl_mm.models.data_preprocessors import \
        MultiViewClsDataPreprocessor
    from ffl_mm.registry import MODELS
    pre = data_preprocessor_cfg(cfg)
    cls = MODELS.get(pre['type'])
    if isinstance(cls, type) and \
            issubclass(cls, MultiViewClsDataPreprocessor):
        pre.pop('_scope_', None)
        pre['type'] = 'ClsDataPreprocessor'
    return pre


def runner_model_cfg(cfg: Config) -> ConfigDict:
    """A copy of ``cfg.model`` with :func:`data_preprocessor_cfg` in it, so
    that a model built outside the Runner normalises its inputs as one
    built by the Runner does."""
    model = copy.deepcopy(cfg.model)
    model['data_preprocessor'] = data_preprocessor_cfg(cfg)
    return model


def input_size(cfg: Config) -> int:
    """Side of the training crops: the train pipeline's crop size."""
    pipeline = cfg.train_dataloader.dataset.get('pipeline', [])
    for step in reversed(pipeline):
        for key in ('crop_size', 'scale'):
            value = step.get(key) if isinstance(step, dict) else None
            if isinstance(value, int):
                return value
            if isinstance(value, (tuple, list)) and value:
                return int(value[0])
    return 224
