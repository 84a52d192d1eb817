# Copyright (c) ffl_mm contributors.
from .border_pad import BorderPad
from .load_image import LoadImageIfMissing

__all__ = ['BorderPad', 'LoadImageIfMissing']
