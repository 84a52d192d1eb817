# Copyright (c) ffl_mm contributors.
"""BorderPad on known images, and the shipped pipelines pad as they say."""

import numpy as np
import pytest
from mmcv.transforms import Compose
from ffl_mm.registry import TRANSFORMS

import ffl_mm  # noqa: F401
from conftest import shipped_config


def _image(h=5, w=6):
    return np.arange(1, h * w * 3 + 1, dtype=np.uint8).reshape(h, w, 3)


@pytest.mark.parametrize('mode', ['reflect', 'edge', 'symmetric'])
def test_border_pad_equals_numpy(mode):
    img = _image()
    out = TRANSFORMS.build(dict(type='BorderPad', padding=2,
                                padding_mode=mode))(dict(img=img))
    want = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode=mode)
    np.testing.assert_array_equal(out['img'], want)
    assert out['img_shape'] == (9, 10)


def test_border_pad_reflect_by_hand_and_uneven_constant():
    row = np.array([[10, 20, 30, 40]], dtype=np.uint8)[..., None]
    img = np.repeat(np.repeat(row, 3, axis=0), 3, axis=2)  # (3, 4, 3)
    out = TRANSFORMS.build(dict(type='BorderPad', padding=2))(
        dict(img=img))['img']
    # reflect without repeating the border pixel: 30 20 | 10 .. 40 | 30 20
    assert out[0, :, 0].tolist() == [30, 20, 10, 20, 30, 40, 30, 20]
    out = TRANSFORMS.build(
        dict(type='BorderPad', padding=(1, 0, 2, 3), padding_mode='constant',
             pad_val=7))(dict(img=img))['img']
    assert out.shape == (6, 7, 3)
    assert (out[:3, 1:5] == img).all()
    assert (out[:, 0] == 7).all() and (out[:, 5:] == 7).all()
    assert (out[3:] == 7).all()


@pytest.mark.parametrize('kwargs, match', [
    (dict(padding=-1), 'padding=-1'),
    (dict(padding=(1, 2)), r'padding=\(1, 2\)'),
    (dict(padding=4, padding_mode='wrap'), "padding_mode='wrap'"),
])
def test_border_pad_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TRANSFORMS.build(dict(type='BorderPad', **kwargs))


def test_border_pad_reflect_larger_than_image():
    with pytest.raises(ValueError, match='larger than the padding'):
        TRANSFORMS.build(dict(type='BorderPad', padding=4))(
            dict(img=_image(3, 3)))


@pytest.mark.parametrize('config, pad', [
    ('configs/ffl/ffl_resnet32x2_cifar100.py', 4),
    ('configs/ffl/ffl_resnet32x2_cifar10.py', 4),
    ('configs/mfef/mfef_resnet32x2_cifar100.py', 4),
    ('configs/baselines/resnet32_cifar100.py', 4),
    ('configs/ffl/ffl_resnet32x2_digits.py', 2),
])
def test_train_pipelines_pad_by_reflection(config, pad):
    """Every crop of a 32x32 image whose pixels are all > 0 comes from the
    reflect-padded image: no zero (constant) padding shows, and each crop
    equals a window of ``np.pad(img, pad, 'reflect')`` (flipped or not)."""
    cfg = shipped_config(config)
    steps = [t for t in cfg.train_dataloader.dataset.pipeline
             if t['type'] != 'PackInputs']
    pipeline = Compose([TRANSFORMS.build(t) for t in steps])
    rng = np.random.RandomState(0)
    img = rng.randint(1, 256, (32, 32, 3)).astype(np.uint8)
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
    windows = {
        padded[t:t + 32, x:x + 32].tobytes()
        for t in range(2 * pad + 1) for x in range(2 * pad + 1)
    }
    windows |= {
        padded[:, ::-1][t:t + 32, x:x + 32].tobytes()
        for t in range(2 * pad + 1) for x in range(2 * pad + 1)
    }
    np.random.seed(0)
    offsets = set()
    for _ in range(40):
        out = pipeline(dict(img=img.copy(), img_shape=(32, 32)))['img']
        assert out.shape == (32, 32, 3)
        assert out.min() > 0, 'zero padding in the crop'
        assert np.ascontiguousarray(out).tobytes() in windows
        offsets.add(out.tobytes())
    assert len(offsets) > 5  # the crops really move
