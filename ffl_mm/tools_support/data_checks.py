# Copyright (c) ffl_mm contributors.
"""Data paths checked before anything is built: a missing root or
annotation file, an empty one, CIFAR files that are not the official ones.
Not imported by ``import ffl_mm``."""
import os
import os.path as osp
import re

from mmengine.config import Config


DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def dataset_cfgs(cfg) -> list:
    """``(where, dataset cfg)`` of every dataset of the data loaders,
    wrappers (``dataset=``/``datasets=``) unpacked."""
    found = []

    def walk(where, ds):
        if not isinstance(ds, dict):
            return
        found.append((where, ds))
        if isinstance(ds.get('dataset'), dict):
            walk(f'{where}.dataset', ds['dataset'])
        for i, inner in enumerate(ds.get('datasets') or []):
            walk(f'{where}.datasets[{i}]', inner)

    for loader in DATALOADER_KEYS:
        if isinstance(cfg.get(loader), dict):
            walk(f'{loader}.dataset', cfg[loader].get('dataset'))
    return found


def check_data_paths(cfg: Config) -> None:
    """A clear error, before anything is built, for a data set whose
    ``data_root`` or ``ann_file`` does not exist (unless it may download
    itself: ``download=True``), or whose ``ann_file`` is empty.

    Raises:
        FileNotFoundError: Naming the config key, the path and the fix.
        ValueError: An empty ``ann_file``.
    """
    checked = set()
    for where, ds in dataset_cfgs(cfg):
        if ds.get('download', False):
            continue
        root = ds.get('data_root') or ''
        if root and not os.path.exists(root):
            hint = ''
            if re.search(r'CIFAR|MNIST', str(ds.get('type', ''))):
                hint = (f', or set {where}.download=True to let MMPretrain '
                        'download it')
            raise FileNotFoundError(
                f'{where}.data_root={root!r} does not exist (looked in '
                f'{os.path.abspath(root)}). Put the data there (see '
                'docs/get_started.md, "Data") or point data_root at it with '
                f'--cfg-options {where}.data_root=PATH{hint}.')
        ann = ds.get('ann_file') or ''
        if ann:
            path = ann if os.path.isabs(ann) else os.path.join(root, ann)
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f'{where}.ann_file={ann!r} does not exist ({path}); fix '
                    f'it with --cfg-options {where}.ann_file=PATH.')
            if osp.isfile(path) and _is_blank(path):
                # MMEngine would fail in np.concatenate ("need at least one
                # array to concatenate")
                raise ValueError(
                    f'{where}.ann_file={ann!r} ({path}) is empty: the data '
                    'set would hold no samples. Fill it (one "path label" '
                    'line per image) or point ann_file at another file.')
        if root and os.path.isdir(root) and (root, ds.get('type')) not in \
                checked:  # val and test loaders often share one data set
            checked.add((root, ds.get('type')))
            _check_cifar_files(where, ds, root)


def _is_blank(path: str) -> bool:
    """Whether the file holds nothing but white space (read up to its first
    other character)."""
    with open(path, 'rb') as f:
        for line in f:
            if line.strip():
                return False
    return True


def _check_cifar_files(where: str, ds: dict, root: str) -> None:
    """For MMPretrain's CIFAR data sets: every file of the split in place
    with the MD5 MMPretrain expects. Otherwise MMPretrain (``download``
    defaults to True) starts a download, which fails after a long wait on a
    machine without network and never says which local file is bad."""
    from mmpretrain.datasets import CIFAR10
    from mmpretrain.datasets.utils import check_integrity

    from ..registry import DATASETS
    dataset_type = ds.get('type')
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) \
        else dataset_type
    if not (isinstance(cls, type) and issubclass(cls, CIFAR10)):
        return
    for name, md5 in [*cls.train_list, *cls.test_list,
                      (cls.meta['filename'], cls.meta['md5'])]:
        path = os.path.join(root, cls.base_folder, name)
        if not os.path.exists(path):
            problem = 'is missing'
        elif not check_integrity(path, md5):
            problem = (f'does not have the MD5 {md5} of the '
                       f'official {cls.__name__} file (damaged or another '
                       'file)')
        else:
            _check_pickle(where, path)
            continue
        raise FileNotFoundError(
            f'{where}: {path} {problem}. Replace it with the file from '
            f'the python version of {cls.__name__} ({cls.url}), or remove '
            f'{os.path.join(root, cls.base_folder)} and set '
            f'{where}.download=True on a machine with network access.')


def _check_pickle(where: str, path: str) -> None:
    """A CIFAR file that passed its md5 check but cannot be unpickled (a
    data set class whose md5 table lists a damaged file): an error naming
    it, where MMPretrain says only ``pickle data was truncated``."""
    from ..datasets.cifar_files import CifarFileError, read_cifar_file
    try:
        read_cifar_file(path)
    except CifarFileError as err:
        raise ValueError(
            f'{where}: {err} Replace it with a complete copy; the md5 '
            'table of the data set class lists this damaged file.') from err
