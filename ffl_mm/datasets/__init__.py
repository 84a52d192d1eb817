# Copyright (c) ffl_mm contributors.
from .digits import Digits

__all__ = ['Digits']
