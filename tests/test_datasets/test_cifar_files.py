# Copyright (c) ffl_mm contributors.
"""Each CIFAR file is unpickled once for every check ffl_mm runs on it:
the tools' path check, the Runner's check before it builds the data set
and the data-set hook's check after (MMPretrain then reads it itself)."""
import pickle

import pytest
from mmengine.config import Config

from conftest import write_cifar
from ffl_mm.datasets import cifar_files


def test_every_check_shares_one_read_per_file(tmp_path, monkeypatch):
    from mmpretrain.datasets import CIFAR10

    from ffl_mm.engine.hooks.dataset_check_hook import (check_cifar_files,
                                                        check_cifar_split)
    from ffl_mm.registry import DATASETS
    from ffl_mm.tools_support.data_checks import check_data_paths
    name = write_cifar(tmp_path, CIFAR10, 10)
    cls = DATASETS.get(name)
    loads = []
    original = pickle.load

    def counted(f, *args, **kwargs):
        loads.append(f.name)
        return original(f, *args, **kwargs)

    monkeypatch.setattr(pickle, 'load', counted)
    monkeypatch.setattr(cifar_files, '_READ', {})
    dataset = dict(type=name, data_root=str(tmp_path), split='train')
    check_data_paths(Config(dict(train_dataloader=dict(dataset=dataset))))
    check_cifar_split(cls, str(tmp_path), 'train', 'train_dataloader')
    files = [n for n, _ in cls.train_list]
    ours = [p for p in loads if p.rsplit('/', 1)[-1] in files]
    assert sorted(p.rsplit('/', 1)[-1] for p in ours) == sorted(files)
    monkeypatch.setattr(pickle, 'load', original)
    built = cls(data_root=str(tmp_path), split='train')
    monkeypatch.setattr(pickle, 'load', counted)
    loads.clear()
    check_cifar_files(built, 'train_dataloader.dataset')
    assert loads == []


def test_a_file_that_is_not_a_pickle_is_named(tmp_path):
    path = tmp_path / 'data_batch_1'
    path.write_bytes(b'not a pickle')
    with pytest.raises(cifar_files.CifarFileError,
                       match=r'data_batch_1 \(12 bytes\) cannot be read as '
                       'a CIFAR file'):
        cifar_files.read_cifar_file(str(path))
