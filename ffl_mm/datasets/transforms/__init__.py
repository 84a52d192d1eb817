# Copyright (c) ffl_mm contributors.
from .border_pad import BorderPad

__all__ = ['BorderPad']
