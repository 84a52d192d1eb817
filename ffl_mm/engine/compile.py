# Copyright (c) ffl_mm contributors.
"""``compile=...`` in a config: ``torch.compile`` of the model's tensor
computation, for training and testing.

MMEngine's Runner reads the same key and compiles ``model.train_step``
as a whole, data preprocessing, loss dictionaries and the optimizer step
included; with torch 2.14 dynamo fails inside ``SGD.step``
(``InternalTorchDynamoError: 'UserDefinedDictVariable' object has no
attribute 'items'``, with MMEngine's own optimizer constructor too), and
it compiles nothing for ``test``/``val``. ffl_mm's ``tools/train.py`` and
``tools/test.py`` therefore take the key over (:func:`take_over_compile`)
and compile only the computation from images to logits
(:func:`compile_model`): the methods a ``MultiBranchClassifier`` names in
``compile_targets`` (``_forward_all``: the backbones, MFEF's enhancement,
the fusion module, the heads and a method's training targets such as
OKDDip's attention; DML's one-by-one update adds ``_branch_logits``), or
``extract_feat`` of any other classifier. Losses, metrics and the
optimizer step stay eager; the work dir's config copy keeps the key.
"""
from typing import List, Optional, Union

import torch
import torch.nn as nn

#: What a classifier without ``compile_targets`` has compiled.
FALLBACK_METHOD = 'extract_feat'


def compile_options(value: Union[None, bool, dict]) -> Optional[dict]:
    """``torch.compile`` keyword arguments from a config's ``compile``
    value (MMEngine's forms: ``True``, ``False``/None or a dict such as
    ``dict(backend='inductor', mode='max-autotune')``); None: do not
    compile.

    Raises:
        TypeError: Another kind of value, named.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise TypeError(f'compile={value!r}: use True, False or a dict of '
                    'torch.compile arguments, e.g. dict(backend="inductor").')


def take_over_compile(runner) -> Optional[str]:
    """Compile a built Runner's model as its config's ``compile`` asks
    (:func:`compile_model`), and turn the key off in the Runner's own
    config so that ``runner.train()`` does not compile ``train_step``
    (the work dir's copy, written when the Runner was built, keeps it).

    Returns:
        str, optional: What was compiled (logged), None without
        ``compile``.
    """
    options = compile_options(runner.cfg.get('compile', None))
    if options is None:
        return None
    runner.cfg['compile'] = False
    compiled = compile_model(runner.model, options)
    runner.logger.info(
        f'compile: {compiled} is compiled with torch.compile({options}); '
        'the first iterations (and each new batch shape) compile it.')
    return compiled


def compile_model(model: nn.Module, options: dict) -> str:
    """``torch.compile`` the model's computation from images to logits, in
    place (see the module docstring); compilation happens at the first
    call, for each new input shape.

    Args:
        model (nn.Module): The classifier, or a model around it in
            ``.module`` (MMEngine's DDP wrapper, a test-time-augmentation
            model).
        options (dict): ``torch.compile`` keyword arguments.

    Returns:
        str: ``'<Class>.<method>'`` (``, `` between several), what was
        compiled.

    Raises:
        TypeError: The model has neither ``compile_targets`` nor
            ``extract_feat``.
    """
    inner = _classifier(model)
    targets = _targets(inner)
    if not targets:
        raise TypeError(
            f'compile: {type(inner).__name__} has neither compile_targets '
            f'nor {FALLBACK_METHOD}; leave compile unset for it.')
    for name in targets:
        setattr(inner, name, torch.compile(getattr(inner, name), **options))
    return ', '.join(f'{type(inner).__name__}.{name}' for name in targets)


def _targets(model: nn.Module) -> List[str]:
    """The methods of ``model`` to compile; empty where it has none."""
    targets = getattr(model, 'compile_targets', None)
    if targets:
        return list(targets)
    return [FALLBACK_METHOD] if callable(
        getattr(model, FALLBACK_METHOD, None)) else []


def _classifier(model: nn.Module) -> nn.Module:
    while not _targets(model) and \
            isinstance(getattr(model, 'module', None), nn.Module):
        model = model.module
    return model


def compiled_methods(model: nn.Module) -> List[str]:
    """Names of the methods :func:`compile_model` replaced on ``model``."""
    inner = _classifier(model)
    return [name for name in _targets(inner) if name in vars(inner)]
