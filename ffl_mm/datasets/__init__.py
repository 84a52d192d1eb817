# Copyright (c) ffl_mm contributors.
from .digits import Digits
from .transforms import BorderPad

__all__ = ['BorderPad', 'Digits']
