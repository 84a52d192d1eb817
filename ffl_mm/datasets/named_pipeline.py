# Copyright (c) ffl_mm contributors.
"""A data set's pipeline whose failures name the sample and its file."""
import os.path as osp
from typing import Callable, Optional


class SamplePipelineError(RuntimeError):
    """A sample's pipeline failed (an unreadable image, a transform's
    error); the message names the data set, the sample and its file."""


def _file_of(data: dict) -> Optional[str]:
    path = data.get('img_path') or data.get('filename')
    if not isinstance(path, str):
        return None
    size = f'{osp.getsize(path)} bytes' if osp.isfile(path) else 'missing'
    return f'{path} ({size})'


class NamedPipeline:
    """Calls a data set's pipeline (MMEngine's ``Compose``) and turns an
    exception into a :class:`SamplePipelineError` naming the data set
    (``where``), the sample's index and its file.

    MMPretrain leaves the raw error: a 0-byte JPEG ends in OpenCV's
    ``!buf.empty()`` from a data loader worker, with no file named.

    Args:
        pipeline (Callable): The data set's pipeline.
        where (str): The data set, e.g. ``'train_dataloader.dataset
            (ImageNet)'``.
    """

    def __init__(self, pipeline: Callable, where: str):
        self.pipeline = pipeline
        self.where = where

    def __call__(self, data: dict):
        try:
            return self.pipeline(data)
        except Exception as err:
            sample = data.get('sample_idx', '?')
            file = _file_of(data)
            raise SamplePipelineError(
                f'{self.where}: sample {sample}'
                + (f', {file},' if file else '') + ' failed in its '
                f'pipeline: {type(err).__name__}: {err}. Fix or remove the '
                'file (and its line in the annotation file).') from err

    def __getattr__(self, name):
        # ``transforms`` and the like, as the wrapped pipeline has them
        if name == 'pipeline':
            raise AttributeError(name)
        return getattr(self.pipeline, name)


def name_sample_errors(dataset, where: str) -> None:
    """Wrap the pipeline of ``dataset`` (and of the data sets inside
    MMEngine's wrappers: ``ConcatDataset``, ``RepeatDataset``,
    ``ClassBalancedDataset``) in :class:`NamedPipeline`, once."""
    for inner in getattr(dataset, 'datasets', ()):
        name_sample_errors(inner, where)
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        name_sample_errors(inner, where)
    pipeline = getattr(dataset, 'pipeline', None)
    if callable(pipeline) and not isinstance(pipeline, NamedPipeline):
        dataset.pipeline = NamedPipeline(
            pipeline, f'{where} ({type(dataset).__name__})')
