# Copyright (c) ffl_mm contributors.
"""What a distillation loss declares it takes, checked against what a
multi-branch classifier gives it, at build time.

A distillation loss (``distill_loss``) declares two class attributes:

* ``needs_teacher`` (bool): whether ``forward`` needs the teacher's logits
  ``(B, C)`` after the branch logits (``MutualKDLoss``), or works on the
  branches alone (``PeerKDLoss``);
* ``target_keys`` (tuple of str): the keys of the classifier's
  ``forward_targets`` dict it takes (``DiversePeerKDLoss``:
  ``('peer_targets', )``); ``()`` for none.

A classifier declares ``teacher_output`` (None: no teacher) and
``target_keys``. The errors name the registered classes that would fit,
found from these declarations, so that no table lists the methods.
"""
from typing import List, Tuple

import torch.nn as nn

from ffl_mm.registry import MODELS


class DistillContractError(TypeError):
    """A distillation loss that does not declare what it takes."""


def loss_contract(loss: nn.Module) -> Tuple[bool, Tuple[str, ...]]:
    """``(needs_teacher, target_keys)`` declared by a distillation loss.

    Raises:
        DistillContractError: The loss declares no ``needs_teacher``.
    """
    cls = type(loss)
    if not isinstance(getattr(cls, 'needs_teacher', None), bool):
        raise DistillContractError(
            f'distill_loss {cls.__name__} does not declare needs_teacher: '
            'a distillation loss sets the class attributes needs_teacher '
            '(True: forward(branch_logits, teacher_logits)) and '
            'target_keys (the forward_targets keys it takes); see '
            'docs/architecture.md.')
    return cls.needs_teacher, tuple(getattr(cls, 'target_keys', ()))


def _registered_losses(needs_teacher: bool,
                       target_keys: Tuple[str, ...]) -> List[str]:
    found = []
    for name, cls in sorted(MODELS.module_dict.items()):
        if isinstance(cls, type) and \
                isinstance(getattr(cls, 'needs_teacher', None), bool) and \
                cls.needs_teacher == needs_teacher and \
                tuple(getattr(cls, 'target_keys', ())) == target_keys:
            found.append(name)
    return found


def check_distill_contract(cls: type, loss: nn.Module) -> None:
    """``loss`` fits classifier class ``cls``: a teacher where it needs one,
    and exactly the training-only targets the class gives.

    Raises:
        ValueError: Naming the loss, what it needs and the registered
            classifiers or losses that fit.
    """
    from .branch_cfgs import subclasses
    from .multi_branch import MultiBranchClassifier
    needs_teacher, keys = loss_contract(loss)
    name, loss_name = cls.__name__, type(loss).__name__
    if needs_teacher and cls.teacher_output is None:
        with_teacher = [
            c.__name__ for c in subclasses(MultiBranchClassifier)
            if c.teacher_output is not None]
        fits = _registered_losses(False, tuple(cls.target_keys))
        raise ValueError(
            f'{name}: distill_loss {loss_name} teaches the branches from a '
            f'teacher, and {name} has none (teacher_output=None). Use a '
            f'classifier with a teacher ({", ".join(with_teacher)}) or a '
            f'loss between the branches ({", ".join(fits)}).')
    if keys != tuple(cls.target_keys):
        givers = [c.__name__ for c in subclasses(MultiBranchClassifier)
                  if tuple(c.target_keys) == keys]
        fits = _registered_losses(needs_teacher and
                                  cls.teacher_output is not None,
                                  tuple(cls.target_keys))
        raise ValueError(
            f'{name}: distill_loss {loss_name} takes the training targets '
            f'{list(keys)}, and {name} gives {list(cls.target_keys)}. '
            f'Use a loss that takes {list(cls.target_keys)} '
            f'({", ".join(fits) or "none registered"}) or a classifier that '
            f'gives {list(keys)} ({", ".join(givers) or "none registered"}).')


def check_distill_setup(cls: type, base: type, distill_loss,
                        output_names: List[str]) -> None:
    """What a classifier class declares about distillation holds before
    anything is built: ``base`` itself (the cross-entropy floor) takes no
    ``distill_loss``, and a ``teacher_output`` that is none of
    ``output_names`` is made by the class's own ``distill_teacher``.

    Raises:
        TypeError: Naming the class and what to use instead.
    """
    if distill_loss is not None and cls is base:
        raise TypeError(
            f'{base.__name__} got distill_loss={distill_loss!r}: it trains '
            "the branches with cross-entropy only (the methods' floor). "
            "Distillation is a method's class: type='DMLClassifier' for "
            'PeerKDLoss between the branches (DML), or the class of the '
            'method you want.')
    if cls.teacher_output not in (None, *output_names) and \
            cls.distill_teacher is base.distill_teacher:
        raise TypeError(
            f'{cls.__name__}: teacher_output={cls.teacher_output!r} is not '
            f'one of its outputs {output_names}; a training-only teacher is '
            'made by overriding distill_teacher().')
