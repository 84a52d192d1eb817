# Copyright (c) ffl_mm contributors.
"""Refuse, before the first step, a data set that is empty or whose labels
the model's heads cannot predict."""
import logging
import os.path as osp
from typing import Optional

import numpy as np
from torch.utils.data import Dataset
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ffl_mm.datasets.named_pipeline import name_sample_errors
from ffl_mm.registry import HOOKS
from .data_fingerprint import data_changes, data_fingerprint


class DatasetCheckError(ValueError):
    """A data set the model cannot train on or be evaluated with."""


def model_num_classes(model) -> Optional[int]:
    """Classes the model's heads predict (``num_classes`` of the first
    branch's head, or of a plain classifier's head), through DDP and TTA
    wrappers; None when the model does not say."""
    while hasattr(model, 'module'):  # DDP, BaseTTAModel
        model = model.module
    heads = getattr(model, 'heads', None)
    head = heads[0] if heads else getattr(model, 'head', None)
    num_classes = getattr(head, 'num_classes', None)
    return num_classes if isinstance(num_classes, int) else None


def _describe(dataset) -> str:
    """The data set's class and where it reads from."""
    where = [f'{k}={getattr(dataset, k)!r}'
             for k in ('data_root', 'ann_file', 'split')
             if getattr(dataset, k, None)]
    return f'{type(dataset).__name__}({", ".join(where)})'


def _labels(dataset) -> Optional[np.ndarray]:
    """Every single-label ground truth of ``dataset`` ``(N, )``; None when
    it does not list them (no ``get_gt_labels``, unlabelled samples,
    multi-label data)."""
    get = getattr(dataset, 'get_gt_labels', None)
    if get is None:
        return None
    try:
        labels = np.asarray(get())
    except (KeyError, TypeError, ValueError):
        return None
    if labels.dtype == object or not np.issubdtype(labels.dtype, np.integer):
        return None
    return labels.reshape(-1)


#: Values of one CIFAR image row (3 x 32 x 32, channel-major).
CIFAR_ROW = 3 * 32 * 32


def check_cifar_files(dataset, where: str) -> None:
    """For MMPretrain's CIFAR data sets (and subclasses with their own md5
    table): every file of the split holds whole 3x32x32 images, as many as
    labels. MMPretrain reshapes whatever the files hold into 3x32x32 images
    and pairs them with the first labels: grey 28x28 rows silently become
    fewer colour images, with the wrong labels.

    Raises:
        DatasetCheckError: Naming the file, what it holds and what a CIFAR
            file holds.
    """
    from mmpretrain.datasets import CIFAR10
    if not isinstance(dataset, CIFAR10):
        return
    check_cifar_split(type(dataset), dataset.data_prefix['root'],
                      dataset.split, where)


def check_cifar_split(cls, root: str, split: str, where: str) -> None:
    """:func:`check_cifar_files` for a CIFAR data set class (``cls``), its
    root folder and split, before or without building the data set (whose
    reader fails on a file that does not divide into whole images with
    ``cannot reshape array``, naming no file)."""
    from ...datasets.cifar_files import read_cifar_file
    files = cls.train_list if split == 'train' else cls.test_list
    dataset_name = cls.__name__
    for name, _ in files:
        path = osp.join(root, cls.base_folder, name)
        shape, num_labels = read_cifar_file(path)
        if len(shape) != 2 or shape[1] != CIFAR_ROW:
            raise DatasetCheckError(
                f'{where} ({dataset_name}): {path} holds an array '
                f'of shape {shape}, not rows of 3x32x32 = '
                f'{CIFAR_ROW} values (a CIFAR image each): MMPretrain would '
                'reshape it into other images and pair them with the wrong '
                'labels. Convert the data to 32x32 colour images, or use a '
                'data set class for its format.')
        if num_labels is None or num_labels != shape[0]:
            count = 'no' if num_labels is None else num_labels
            raise DatasetCheckError(
                f'{where} ({dataset_name}): {path} holds '
                f'{shape[0]} images and {count} labels; a CIFAR file '
                'holds one label per image.')


def check_dataset(dataset, num_classes: Optional[int], where: str) -> bool:
    """Raise :class:`DatasetCheckError` if ``dataset`` is empty or holds a
    label outside ``[0, num_classes)``.

    Args:
        dataset: A built data set (MMPretrain's ``BaseDataset`` lists its
            labels; others are only checked for emptiness).
        num_classes (int, optional): Classes of the model's heads; None
            skips the label check.
        where (str): The config key, e.g. ``'train_dataloader.dataset'``.

    Returns:
        bool: Whether the labels were checked (the data set lists them and
        ``num_classes`` is known).
    """
    if len(dataset) == 0:
        raise DatasetCheckError(
            f'{where} ({_describe(dataset)}) holds no samples: check its '
            'ann_file, data_prefix and indices.')
    if num_classes is None:
        return False
    labels = _labels(dataset)
    if labels is None or not labels.size:
        return False
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        first = int(bad[0])
        raise DatasetCheckError(
            f'{where} ({_describe(dataset)}): sample {first} has label '
            f'{int(labels[first])} ({bad.size} of {labels.size} samples '
            f'outside 0..{num_classes - 1}; labels span {int(labels.min())}'
            f'..{int(labels.max())}), but the model\'s heads predict '
            f'num_classes={num_classes}. Set the heads\' num_classes (and '
            'data_preprocessor.num_classes) to the number of classes of the '
            'data, or fix the annotations.')
    return True


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Check each data set once, before it is used: an empty data set and a
    label the heads cannot predict are errors naming the data set, the
    label and ``num_classes``; a sample whose pipeline fails later (an
    unreadable image) is named with its file
    (:func:`~ffl_mm.datasets.named_pipeline.name_sample_errors`).

    Without it, a label ``>= num_classes`` ends training in PyTorch's
    ``IndexError: Target 10 is out of bounds`` (a device-side assertion on
    CUDA) and evaluation prints a top-1 over classes the model cannot
    predict.

    Reading the labels walks the data set's annotation list once, with
    MMPretrain's ``get_gt_labels`` (its cost: docs/benchmarks.md).
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._checked = set()
        self._fingerprint = None
        self._loaded_meta = None

    def _train_fingerprint(self, runner) -> Optional[dict]:
        if self._fingerprint is None:
            dataset = getattr(runner.train_dataloader, 'dataset', None)
            self._fingerprint = data_fingerprint(dataset) or {}
        return self._fingerprint or None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        fingerprint = self._train_fingerprint(runner)
        if fingerprint is not None:
            checkpoint['meta']['ffl_mm_data'] = fingerprint

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) \
            else None
        self._loaded_meta = meta if isinstance(meta, dict) else None

    def _check_resumed_data(self, runner) -> None:
        """A resumed run (``runner.iter > 0`` after loading; ``load_from``
        leaves it at 0) on other data than its checkpoint recorded: a
        warning naming what changed, an error when the classes did."""
        meta, self._loaded_meta = self._loaded_meta, None
        before = (meta or {}).get('ffl_mm_data')
        if not isinstance(before, dict) or runner.iter == 0:
            return
        now = self._train_fingerprint(runner)
        if now is None:
            return
        classes, other = data_changes(before, now)
        if classes and not runner.cfg.get('resume_with_other_classes',
                                          False):
            raise DatasetCheckError(
                'train_dataloader.dataset differs from the data the resumed '
                'checkpoint was trained on: ' + '; '.join(classes + other) +
                '. Every label of a renamed or removed class now means '
                'another class. Resume on the original data, start a new '
                'run (load_from=CHECKPOINT, another work_dir), or, if this '
                'is intended, --cfg-options resume_with_other_classes=True.')
        if classes or other:
            print_log('Resuming on other training data than the checkpoint '
                      'recorded: ' + '; '.join(classes + other) + '.',
                      logger='current', level=logging.WARNING)

    def _check(self, runner, loader: str) -> None:
        if loader in self._checked:
            return
        self._checked.add(loader)
        dataset = getattr(getattr(runner, loader), 'dataset', None)
        if isinstance(dataset, Dataset):
            check_cifar_files(dataset, f'{loader}.dataset')
            # before the loader's workers start: they get the wrapper
            name_sample_errors(dataset, f'{loader}.dataset')
        else:
            # a tool's stand-in (MMPretrain's vis_scheduler.py iterates a
            # range with a mock data set): nothing a user's data can be
            # checked on
            print_log(f'{loader}: {type(dataset).__name__} is not a data '
                      'set; not checked', logger='current',
                      level=logging.DEBUG)
            return
        num_classes = model_num_classes(runner.model)
        if check_dataset(dataset, num_classes, f'{loader}.dataset'):
            print_log(f'{loader}.dataset: {len(dataset)} samples, labels '
                      f'within the heads\' {num_classes} classes',
                      logger='current')

    def before_train(self, runner) -> None:
        self._check(runner, 'train_dataloader')
        self._check_resumed_data(runner)

    def before_val(self, runner) -> None:
        self._check(runner, 'val_dataloader')

    def before_test(self, runner) -> None:
        self._check(runner, 'test_dataloader')
