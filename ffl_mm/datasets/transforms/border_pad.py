# Copyright (c) ffl_mm contributors.
"""Padding every border of an image by a fixed number of pixels."""
from typing import Sequence, Union

import mmcv
from mmcv.transforms import BaseTransform

from ffl_mm.registry import TRANSFORMS

PADDING_MODES = ('constant', 'edge', 'reflect', 'symmetric')


@TRANSFORMS.register_module()
class BorderPad(BaseTransform):
    """Pad ``img`` by ``padding`` pixels on its borders.

    The CIFAR recipe of FFL (and of most CIFAR work) pads 4 pixels by
    reflection, flips, then crops 32x32 at random. MMPretrain 1.2.0's
    ``RandomCrop(padding=4, padding_mode='reflect')`` pads with zeros
    (``padding_mode`` is only used by ``pad_if_needed``), and mmcv's ``Pad``
    pads to a size, on the bottom and right only. So ffl_mm's pipelines
    pad with this transform, then use MMPretrain's ``RandomFlip`` and
    ``RandomCrop(crop_size=32)``. The padding itself is mmcv's ``impad``.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.

    Shapes: ``(H, W, C)`` in, ``(H + top + bottom, W + left + right, C)``
    out.

    Args:
        padding (int | Sequence[int]): Pixels on every border, or
            ``(left, top, right, bottom)``.
        padding_mode (str): ``'constant'``, ``'edge'``, ``'reflect'``
            (mirror without repeating the border pixel, PyTorch's and
            NumPy's ``reflect``) or ``'symmetric'``. Defaults to
            ``'reflect'``.
        pad_val (int | float | Sequence): Value for ``'constant'``: one
            number for every channel, or one per channel. Defaults to 0.
    """

    def __init__(self,
                 padding: Union[int, Sequence[int]] = 4,
                 padding_mode: str = 'reflect',
                 pad_val: Union[int, float, Sequence] = 0):
        given = padding
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding, ) * 4
        if not (isinstance(padding, (list, tuple)) and len(padding) == 4 and
                all(isinstance(p, int) and p >= 0 for p in padding)):
            raise ValueError(
                f'BorderPad: padding={given!r}; give an int >= 0 or four '
                'ints (left, top, right, bottom).')
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f'BorderPad: padding_mode={padding_mode!r}; use one of '
                f'{PADDING_MODES}.')
        self.padding = tuple(padding)
        self.padding_mode = padding_mode
        self.pad_val = pad_val

    def transform(self, results: dict) -> dict:
        img = results['img']
        left, top, right, bottom = self.padding
        if self.padding_mode == 'reflect' and (
                max(top, bottom) >= img.shape[0] or
                max(left, right) >= img.shape[1]):
            raise ValueError(
                f'BorderPad: reflect padding {self.padding} needs an image '
                f'larger than the padding, got {img.shape[:2]}.')
        pad_val = self.pad_val
        if isinstance(pad_val, (int, float)) and img.ndim == 3:
            # OpenCV fills only the first channel with a bare number
            pad_val = (pad_val, ) * img.shape[2]
        img = mmcv.impad(
            img,
            padding=self.padding,
            pad_val=pad_val,
            padding_mode=self.padding_mode)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(padding={self.padding}, '
                f'padding_mode={self.padding_mode!r}, '
                f'pad_val={self.pad_val})')
