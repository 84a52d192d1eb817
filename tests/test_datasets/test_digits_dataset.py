# Copyright (c) ffl_mm contributors.
import numpy as np
import pytest
from ffl_mm.registry import DATASETS
from sklearn.datasets import load_digits

from ffl_mm.datasets import Digits


def test_split_sizes_and_samples():
    train = Digits(split='train')
    test = Digits(split='test')
    assert (len(train), len(test)) == (1347, 450)
    assert train.CLASSES == tuple('0123456789')
    info = test.get_data_info(3)
    img = info['img']
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    # grey: the three channels are identical
    assert (img[..., 0] == img[..., 2]).all()
    # test sample 3 is load_digits() sample 12 (every 4th index)
    digits = load_digits()
    assert info['gt_label'] == digits.target[12]
    # up-scaled from 8x8: the border of a digit image is dark, its centre
    # is not
    assert img[:, 0].max() < img[8:24, 8:24].max()
    labels = train.get_gt_labels()
    assert set(labels.tolist()) == set(range(10))
    # every class holds between 8 % and 12 % of the train split
    counts = np.bincount(labels, minlength=10) / len(labels)
    assert counts.min() > 0.08 and counts.max() < 0.12


def test_split_is_disjoint_and_complete():
    train = Digits(split='train', img_size=8)
    test = Digits(split='test', img_size=8)
    digits = load_digits()
    expected = np.round(digits.images * 255 / 16).astype(np.uint8)
    got_test = np.stack([test.get_data_info(i)['img'][..., 0]
                         for i in range(len(test))])
    got_train = np.stack([train.get_data_info(i)['img'][..., 0]
                          for i in range(len(train))])
    idx = np.arange(len(expected))
    np.testing.assert_array_equal(got_test, expected[idx % 4 == 0])
    np.testing.assert_array_equal(got_train, expected[idx % 4 != 0])


def test_registered_and_pipeline():
    ds = DATASETS.build(
        dict(
            type='Digits',
            split='test',
            img_size=16,
            pipeline=[dict(type='PackInputs')]))
    item = ds[0]
    assert tuple(item['inputs'].shape) == (3, 16, 16)
    assert item['data_samples'].gt_label.item() == ds.get_data_info(0)[
        'gt_label']


@pytest.mark.parametrize('kwargs, match', [
    (dict(split='val'), "unknown split 'val'"),
    (dict(img_size=4), 'img_size must be an int >= 8'),
    (dict(data_root='data/digits'), 'data_root=.* is not used'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Digits(**kwargs)


@pytest.mark.parametrize('config', [
    'configs/ffl/ffl_resnet32x2_digits.py',
    'configs/mfef/mfef_resnet32x2_digits.py',
    'configs/baselines/resnet32_digits.py',
    'configs/baselines/resnet18-cifar-w16_digits.py',
])
def test_digits_configs_log_twice_an_epoch(config):
    """MMPretrain's ``analyze_logs.py cal_train_time`` drops the first log
    record of every epoch: one record an epoch gave it nan."""
    import math

    from conftest import shipped_config
    cfg = shipped_config(config)
    iters = math.ceil(1347 / cfg.train_dataloader.batch_size)
    assert iters // cfg.default_hooks.logger.interval >= 2
