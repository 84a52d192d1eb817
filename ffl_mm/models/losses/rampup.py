# Copyright (c) ffl_mm contributors.
"""Ramp-up schedules for the distillation weight."""
import math
from typing import Optional


def sigmoid_rampup(current: float, length: Optional[float]) -> float:
    """``exp(-5 · (1 - min(current, length) / length)²)``.

    The "sigmoid-shaped" ramp of Laine and Aila (2017) that FFL uses for
    its KD weight: exp(-5) ≈ 0.0067 at 0, rising to 1 at ``length``.

    Args:
        current (float): The epoch (or iteration), 0-based.
        length (float, optional): Ramp length; 0 or None means no ramp
            (always 1).

    Returns:
        float: The weight in (0, 1].
    """
    if not length:
        return 1.0
    if length < 0:
        raise ValueError(f'ramp-up length must be >= 0, got {length!r}.')
    phase = 1.0 - min(max(float(current), 0.0), float(length)) / length
    return math.exp(-5.0 * phase * phase)
