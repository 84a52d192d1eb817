# Copyright (c) ffl_mm contributors.
"""scikit-learn's bundled handwritten digits as an MMPretrain data set."""
from typing import List, Optional, Sequence, Union

import mmcv
import numpy as np
from mmpretrain.datasets import BaseDataset

from ffl_mm.registry import DATASETS

#: Every ``TEST_EVERY``-th sample (index 0, 4, 8, ...) forms the test split.
TEST_EVERY = 4


@DATASETS.register_module()
class Digits(BaseDataset):
    """The embedded default data set: scikit-learn's handwritten digits.

    ``sklearn.datasets.load_digits`` ships 1,797 real 8x8 grey images of the
    digits 0-9 (the UCI "optdigits" test set) inside the scikit-learn wheel,
    so nothing is downloaded. This class serves them as an ordinary
    MMPretrain data set, so every pipeline, sampler, metric and tool works
    on it unchanged.

    Split (fixed, independent of any random seed or library version): the
    sample with index ``i`` of ``load_digits()`` belongs to the ``'test'``
    split when ``i % 4 == 0`` (450 images) and to the ``'train'`` split
    otherwise (1,347 images). The classes are spread evenly through the
    original order, so both splits hold every class in about the same
    proportion.

    Images: the 0-16 intensities are scaled to 0-255 ``uint8``, resized to
    ``img_size`` x ``img_size`` with bilinear interpolation and repeated to
    three channels, so each ``results['img']`` is an array of shape
    ``(img_size, img_size, 3)`` that a CIFAR-style network accepts. The
    pipeline therefore starts without ``LoadImageFromFile``.

    Args:
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        img_size (int): Side of the square output images. Defaults to 32.
        pipeline (Sequence): Transforms applied to each sample.
        test_mode (bool, optional): Defaults to ``split == 'test'``.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``indices``, ``lazy_init``, ...). ``ann_file``, ``data_root``
            and ``data_prefix`` are not used.
    """

    METAINFO = {'classes': tuple(str(i) for i in range(10))}
    SPLITS = ('train', 'test')

    def __init__(self,
                 split: str = 'train',
                 img_size: int = 32,
                 pipeline: Sequence = (),
                 test_mode: Optional[bool] = None,
                 **kwargs):
        if split not in self.SPLITS:
            raise ValueError(f'Digits: unknown split {split!r}; use one of '
                             f'{self.SPLITS}.')
        if not isinstance(img_size, int) or img_size < 8:
            raise ValueError(f'Digits: img_size must be an int >= 8, got '
                             f'{img_size!r}.')
        for unused in ('ann_file', 'data_root', 'data_prefix'):
            if kwargs.get(unused):
                raise ValueError(
                    f'Digits: {unused}={kwargs[unused]!r} is not used; the '
                    'images come from scikit-learn. Remove the key.')
            kwargs.pop(unused, None)
        self.split = split
        self.img_size = img_size
        if test_mode is None:
            test_mode = split == 'test'
        super().__init__(
            ann_file='', pipeline=pipeline, test_mode=test_mode, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Build one dict per image of the split.

        Returns:
            list[dict]: Each with ``img`` (uint8 array of shape
            ``(img_size, img_size, 3)``), ``img_shape``, ``ori_shape`` and
            ``gt_label`` (int in [0, 9]).
        """
        from sklearn.datasets import load_digits

        digits = load_digits()
        index = np.arange(len(digits.target))
        in_test = index % TEST_EVERY == 0
        keep = in_test if self.split == 'test' else ~in_test
        size = (self.img_size, self.img_size)
        data_list = []
        for image, label in zip(digits.images[keep], digits.target[keep]):
            grey = np.round(image * (255.0 / 16.0)).astype(np.uint8)
            grey = mmcv.imresize(grey, size, interpolation='bilinear')
            img = np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
            data_list.append(
                dict(
                    img=img,
                    img_shape=size,
                    ori_shape=size,
                    gt_label=int(label)))
        return data_list

    def extra_repr(self) -> Union[List[str], str]:
        """Lines that ``repr(dataset)`` adds to MMPretrain's summary."""
        return [f'Split: \t{self.split}', f'Image size: \t{self.img_size}']
