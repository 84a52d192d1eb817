# Copyright (c) ffl_mm contributors.
"""Checks of numeric config arguments that name the bad value."""
import math
import numbers


def real_number(owner: str, name: str, value, minimum: float = None,
                strict: bool = False) -> float:
    """``value`` as a float, or an error naming ``owner.name``.

    Args:
        owner (str): The component, e.g. ``'MutualKDLoss'``.
        name (str): The argument, e.g. ``'temperature'``.
        value: What the config gave.
        minimum (float, optional): The smallest value allowed.
        strict (bool): ``minimum`` itself is not allowed.

    Raises:
        TypeError: ``value`` is not a real number (a string, a bool).
        ValueError: ``value`` is NaN, infinite or below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{owner}: {name} must be a number, got {value!r} '
                        f'({type(value).__name__}).')
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'{owner}: {name} must be finite, got {value!r}.')
    if minimum is not None and (value < minimum or
                                (strict and value == minimum)):
        bound = f'> {minimum:g}' if strict else f'>= {minimum:g}'
        raise ValueError(f'{owner}: {name} must be {bound}, got {value!r}.')
    return value
