# Copyright (c) ffl_mm contributors.
"""MMPretrain's classification preprocessor for batches of several views
of each image (MMPretrain's ``MultiView`` transform)."""
from typing import List

import torch
from mmpretrain.models.utils import ClsDataPreprocessor

from ffl_mm.registry import MODELS


@MODELS.register_module()
class MultiViewClsDataPreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` for V views of every image: each view is
    normalised as MMPretrain's preprocessor does a batch, and the views are
    stacked into ``(B, V, 3, H, W)``, view ``v`` of every image at ``[:,
    v]``. A batch of one view per image (validation, testing) gives
    ``(B, 3, H, W)`` exactly as ``ClsDataPreprocessor``.

    The training pipeline makes the views with MMPretrain's ``MultiView``
    (``dict(type='MultiView', num_views=V, transforms=[[...]])`` before
    ``PackInputs``); ``KDCLClassifier`` gives view i to student i.

    Args:
        **kwargs: ``ClsDataPreprocessor``'s arguments, without
            ``batch_augments`` (Mixup/CutMix would mix each view with other
            images and labels of its own, so the views would no longer show
            one image with one label).
    """

    def __init__(self, **kwargs):
        if kwargs.get('batch_augments'):
            raise ValueError(
                'MultiViewClsDataPreprocessor: batch_augments='
                f"{kwargs['batch_augments']!r} would mix every view with "
                'other images and labels; remove train_cfg.augments (or '
                'model.data_preprocessor.batch_augments).')
        super().__init__(**kwargs)

    def forward(self, data: dict, training: bool = False) -> dict:
        """
        Args:
            data (dict): ``inputs``: as ``default_collate`` gives V views,
                a list of V tensors ``(B, 3, H, W)``; as ``pseudo_collate``
                gives them, a list of V sequences of B tensors ``(3, H,
                W)``; or one view (a tensor, or a list of ``(3, H, W)``).

        Returns:
            dict: ``inputs`` ``(B, V, 3, H, W)`` (or ``(B, 3, H, W)`` for
            one view) and the ``data_samples`` with their labels.
        """
        views = self._views(data['inputs'])
        if views is None:
            return super().forward(data, training)
        # the labels once, with the first view; the others are images only
        out = super().forward(dict(data, inputs=views[0]), training)
        processed: List[torch.Tensor] = [out['inputs']]
        for view in views[1:]:
            processed.append(super().forward(
                dict(inputs=view, data_samples=None), training)['inputs'])
        return dict(out, inputs=torch.stack(processed, dim=1))

    @staticmethod
    def _views(inputs):
        """The views as V batches, or None for a batch of single views."""
        if isinstance(inputs, torch.Tensor) or not inputs:
            return None
        first = inputs[0]
        if isinstance(first, torch.Tensor):
            return list(inputs) if first.dim() == 4 else None
        return [list(view) for view in inputs]
