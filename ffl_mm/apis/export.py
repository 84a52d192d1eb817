# Copyright (c) ffl_mm contributors.
"""Turn a trained multi-branch model into models to deploy.

* :func:`export_branch`: branch i as a plain MMPretrain ``ImageClassifier``
  (backbone, neck, head; with a shared trunk, the trunk plus that branch's
  own stages). Its config and state dict load with MMPretrain alone when
  every component is MMPretrain's; a branch built on an ffl_mm component
  (e.g. ``CIFARResNet``) gets ``custom_imports=['ffl_mm']``.
* :func:`export_fused`: the multi-branch model, predicting with the fused
  classifier, without the training state. It needs ffl_mm.

Used by ``tools/export.py``.
"""
import copy
from collections import OrderedDict
from typing import Dict, Iterator, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict

from ..models.classifiers import MultiBranchClassifier
from ..utils.output_names import FUSED
from ..registry import (DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS,
                        WEIGHT_INITIALIZERS)
from .model_cfg import runner_model_cfg, single_view_preprocessor_cfg

#: Keys copied from the training config so that MMPretrain's
#: ``tools/test.py`` and ``ImageClassificationInferencer`` work.
RUNTIME_KEYS = ('default_hooks', 'env_cfg', 'log_processor',
                'visualizer', 'log_level', 'test_dataloader', 'test_cfg',
                'val_dataloader', 'val_cfg', 'randomness')


class ExportError(ValueError):
    """The model or the request cannot be exported."""


def _types(obj) -> Iterator[str]:
    """Every ``type`` string in a nested config."""
    if isinstance(obj, dict):
        if isinstance(obj.get('type'), str):
            yield obj['type']
        for value in obj.values():
            yield from _types(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _types(value)


def ffl_mm_types(obj) -> list:
    """The ``type`` names in ``obj`` that only ffl_mm registers."""
    found = []
    for name in _types(obj):
        for registry in (MODELS, DATASETS, TRANSFORMS, METRICS, HOOKS,
                         WEIGHT_INITIALIZERS):
            cls = registry.get(name)
            if cls is not None:
                if cls.__module__.startswith('ffl_mm'):
                    found.append(name)
                break
    return sorted(set(found))


def _plain_evaluator(evaluator):
    """``MultiBranchAccuracy`` becomes MMPretrain's ``Accuracy`` (same
    ``topk``): a plain model has one output."""
    if isinstance(evaluator, (list, tuple)):
        return [_plain_evaluator(e) for e in evaluator]
    evaluator = copy.deepcopy(evaluator)
    if isinstance(evaluator, dict) and \
            evaluator.get('type') == 'MultiBranchAccuracy':
        return dict(type='Accuracy', topk=evaluator.get('topk', (1, 5)))
    return evaluator


def _plain_hooks(hooks: dict) -> dict:
    """ffl_mm's ``SafeCheckpointHook`` becomes MMEngine's
    ``CheckpointHook`` (same arguments): an exported model only evaluates,
    and a plain one should need nothing of ffl_mm."""
    hooks = copy.deepcopy(hooks)
    checkpoint = hooks.get('checkpoint')
    if isinstance(checkpoint, dict) and \
            str(checkpoint.get('type', '')).endswith('SafeCheckpointHook'):
        checkpoint.pop('_scope_', None)
        checkpoint['type'] = 'CheckpointHook'
    return hooks


def _runtime(cfg: Config, model_cfg: dict, plain_evaluator: bool) -> dict:
    out = {'model': model_cfg}
    for key in RUNTIME_KEYS:
        if key in cfg:
            out[key] = copy.deepcopy(cfg[key])
    if plain_evaluator and 'default_hooks' in out:
        out['default_hooks'] = _plain_hooks(out['default_hooks'])
    for key in ('test_evaluator', 'val_evaluator'):
        if key in cfg:
            out[key] = _plain_evaluator(cfg[key]) if plain_evaluator else \
                copy.deepcopy(cfg[key])
    return out


def _set_scope(out: dict) -> dict:
    """Scope the exported config by what it holds.

    Only MMPretrain components: MMPretrain's scope and nothing of ffl_mm's,
    so it loads with MMPretrain alone. Any ffl_mm component: ffl_mm's scope,
    the model tagged ``_scope_='ffl_mm'`` (MMPretrain's ``get_model`` and
    inferencers build models in scope ``mmpretrain``) and ffl_mm imported.
    """
    if ffl_mm_types(out):
        out['default_scope'] = 'ffl_mm'
        out['model']['_scope_'] = 'ffl_mm'
        out['custom_imports'] = dict(
            imports=['ffl_mm'], allow_failed_imports=False)
    else:
        out['default_scope'] = 'mmpretrain'
        _drop_ffl_mm_scope(out)
    return out


def _drop_ffl_mm_scope(obj) -> None:
    """Remove ``_scope_='ffl_mm'`` tags (ffl_mm's configs put them on data
    sets and evaluators they take from MMPretrain's bases): in a config of
    MMPretrain components only, each would make MMEngine import ffl_mm."""
    if isinstance(obj, dict):
        if obj.get('_scope_') == 'ffl_mm':
            del obj['_scope_']
        for value in obj.values():
            _drop_ffl_mm_scope(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _drop_ffl_mm_scope(value)


def _drop_ffl_mm_init(obj) -> None:
    """Leave out ``init_cfg`` s that name an initialiser only ffl_mm
    registers (``TorchDefault`` on the CIFAR heads): an exported model's
    weights come from its checkpoint, and the key alone would make the
    config need ffl_mm."""
    if isinstance(obj, dict):
        init = obj.get('init_cfg')
        inits = init if isinstance(init, (list, tuple)) else [init]
        if any(isinstance(i, dict) and ffl_mm_types(dict(type=i.get(
                'type'))) for i in inits):
            del obj['init_cfg']
        for value in obj.values():
            _drop_ffl_mm_init(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _drop_ffl_mm_init(value)


def _to_plain(obj):
    """ConfigDicts to dicts, tuples kept, for a clean dump."""
    if isinstance(obj, (dict, ConfigDict)):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_plain(v) for v in obj)
    return obj


def check_branch(model: MultiBranchClassifier, branch: int) -> None:
    if not isinstance(branch, int) or \
            not 0 <= branch < model.num_branches:
        raise ExportError(
            f'--branch {branch} does not exist: the model has '
            f'{model.num_branches} branches (0 to {model.num_branches - 1}).')


def export_branch(cfg: Config, model: MultiBranchClassifier,
                  branch: int) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """Config dict and state dict of branch ``branch`` as a plain
    ``ImageClassifier``.

    Args:
        cfg (Config): The training config of ``model``.
        model (MultiBranchClassifier): Built from ``cfg``, weights loaded.
        branch (int): 0 to N-1.

    Returns:
        tuple: ``(config dict, state dict)``.
    """
    check_branch(model, branch)
    parts = model.branch_cfg(branch)
    for name, part in parts.items():
        if part is not None and not isinstance(part, dict):
            raise ExportError(
                f'branch {branch} was built from a module instance, not a '
                f'config ({name}); only config-built models can be exported.')
    model_cfg = copy.deepcopy(dict(
        type='ImageClassifier',
        backbone=parts['backbone'],
        neck=parts['neck'],
        head=parts['head'],
        data_preprocessor=single_view_preprocessor_cfg(cfg)))
    _drop_ffl_mm_init(model_cfg)
    out = _set_scope(_runtime(cfg, model_cfg, plain_evaluator=True))
    return _to_plain(out), model.branch_state_dict(branch)


def export_fused(cfg: Config, model: MultiBranchClassifier
                 ) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """Config dict and state dict of the whole model predicting with the
    fused classifier (``test_cfg.predict='fused'``); needs ffl_mm."""
    if not model.with_fusion:
        raise ExportError('--fused: this model has no fused classifier '
                          '(no fusion neck: DML, ONE or cross-entropy-only '
                          'branches); export a --branch, or use the config '
                          'and checkpoint as they are for its ensemble.')
    model_cfg = runner_model_cfg(cfg)
    model_cfg['test_cfg'] = dict(predict=FUSED)
    out = _set_scope(_runtime(cfg, model_cfg, plain_evaluator=False))
    state = OrderedDict(
        (k, v.detach().clone()) for k, v in model.state_dict().items())
    return _to_plain(out), state


def exported_checkpoint(state: Dict[str, torch.Tensor],
                        source_meta: Optional[dict], output: str,
                        source: str) -> dict:
    """A checkpoint of plain types only (it loads with
    ``torch.load(weights_only=True)``): ``state_dict`` and ``meta`` with
    the source's ``dataset_meta`` and where it came from."""
    meta = {}
    dataset_meta = (source_meta or {}).get('dataset_meta')
    if isinstance(dataset_meta, dict):
        meta['dataset_meta'] = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataset_meta.items()
            if isinstance(v, (str, int, float, list, tuple))
        }
    meta['ffl_mm_export'] = dict(source=str(source), output=output)
    return dict(meta=meta, state_dict=state)
