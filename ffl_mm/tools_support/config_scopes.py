# Copyright (c) ffl_mm contributors.
"""Find ffl_mm types that a config puts where the Runner cannot build them.

MMEngine tags every typed dict that a config inherits through
``mmpretrain::`` with ``_scope_='mmpretrain'``. The tag is invisible in the
file a user reads, it survives when a child config changes the dict's
``type``, and the Runner builds such a dict, with everything nested in it,
in MMPretrain's registries only. ffl_mm's registries are children of
MMPretrain's: they find MMPretrain's and MMEngine's types too, but MMPretrain's
do not find ffl_mm's. So ``val_evaluator = dict(type='MultiBranchAccuracy')``
over an evaluator inherited from MMPretrain's data bases stops the run at its
first validation with MMEngine's ``KeyError: 'MultiBranchAccuracy is not in
the mmpretrain::metric registry'``.

:func:`check_config_scopes` names every such place before anything is built:
the dotted path, the scope it would be built in, and the fix.
"""
from typing import Iterator, List, Optional, Tuple

from ..registry import ALL_REGISTRIES, SCOPE


class ConfigScopeError(KeyError):
    """An ffl_mm type sits in a part of the config that the Runner builds in
    another registry scope."""

    def __str__(self):  # KeyError would print the message quoted
        return str(self.args[0])


def ffl_mm_type_names() -> frozenset:
    """Every type name that ffl_mm registers (in scope ``ffl_mm``)."""
    return frozenset(name for registry in ALL_REGISTRIES.values()
                     for name in registry.module_dict)


def _walk(obj, path: str, scope: str) -> Iterator[Tuple[str, str, str]]:
    """``(path, scope, type)`` of every dict with a string ``type``, in the
    scope the Runner builds it in: the nearest ``_scope_`` above it (itself
    included), else the config's default scope."""
    if isinstance(obj, dict):
        scope = obj.get('_scope_') or scope
        if isinstance(obj.get('type'), str):
            yield path, scope, obj['type']
        for key, value in obj.items():
            yield from _walk(value, f'{path}.{key}' if path else str(key),
                             scope)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _walk(value, f'{path}[{i}]', scope)


def misplaced_types(cfg: dict) -> List[Tuple[str, str, str]]:
    """``(path, scope, type)`` for each bare ffl_mm type name that the
    Runner would look up in a scope other than ``ffl_mm`` (where it is not
    registered).

    Args:
        cfg (dict | Config): A whole config (its ``default_scope`` is the
            scope of untagged parts, ``'mmengine'`` where it has none, as
            in MMEngine's Runner).
    """
    default: Optional[str] = cfg.get('default_scope') or 'mmengine'
    ours = ffl_mm_type_names()
    root = {k: v for k, v in cfg.items() if k != 'default_scope'}
    return [(path, scope, name)
            for path, scope, name in _walk(root, '', default)
            if scope != SCOPE and name in ours]


def check_config_scopes(cfg: dict) -> None:
    """Raise :class:`ConfigScopeError` naming every ffl_mm type that the
    Runner would look up in another scope (see the module docstring)."""
    found = misplaced_types(cfg)
    if not found:
        return
    lines = [
        f"  {path}: type='{name}' would be built in scope '{scope}'"
        for path, scope, name in found
    ]
    raise ConfigScopeError(
        'ffl_mm types in parts of the config that the Runner builds in '
        "another registry scope (a dict inherited through 'mmpretrain::' "
        "keeps _scope_='mmpretrain' even where a child config changes its "
        'type):\n' + '\n'.join(lines) + '\n'
        "Fix: add _scope_='ffl_mm' to each of those dicts (ffl_mm's "
        "registries also hold MMPretrain's and MMEngine's types), or write "
        f"the type with its scope, e.g. type='ffl_mm.{found[0][2]}'.")
