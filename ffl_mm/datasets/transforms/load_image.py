# Copyright (c) ffl_mm contributors.
"""Load a sample's image from its file unless the data set already holds
it in memory."""
from mmcv.transforms import LoadImageFromFile

from ffl_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadImageIfMissing(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments) for a pipeline that
    serves in-memory samples and image files alike.

    A sample that already holds ``img`` (the digits data set) passes
    through unchanged; one that names only ``img_path`` is read as
    ``LoadImageFromFile`` reads it. So the digits configs' test pipeline
    also takes an image file, as MMPretrain's ``vis_cam.py`` gives it one.

    Required keys: ``img`` or ``img_path``. Added keys: ``img``,
    ``img_shape``, ``ori_shape`` (``(H, W)``) where missing.
    """

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if img is None:
            return super().transform(results)
        results.setdefault('img_shape', img.shape[:2])
        results.setdefault('ori_shape', img.shape[:2])
        return results
